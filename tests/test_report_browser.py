"""report.html in a real browser: headless Chromium through its DevTools protocol (over a pipe: no websocket
package, no port). The page must load with no console error and no network request, show the headline, and
every plot must render non-blank. Without Chromium the test skips and says why.

Install Chromium on Debian: ``apt-get install -y --no-install-recommends chromium``.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.usefixtures("torch_single_thread"), pytest.mark.heavy]

WIDTH = 1280


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies out; each
    message is JSON ending in a NUL byte). One page, flattened session."""

    def __init__(self, exe: str, profile: Path, timeout: float = 60.0):
        self.timeout, self.events, self._id, self._buf = timeout, [], 0, b""
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        # the child sees the pipes as fds 3 and 4; copies at fd >= 10 first, so that no dup2 overwrites the other
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.log = profile.with_name(profile.name + ".log")
        with open(self.log, "wb") as log:  # a file, not a pipe: a chatty browser never blocks on a full pipe
            # the dup2 copies are inheritable, the rest of this process's fds are not (PEP 446); pass_fds would
            # need fds 3 and 4 to exist here already
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=False,
                                         preexec_fn=lambda: (os.dup2(high[0], 3), os.dup2(high[1], 4)))
        for fd in high:
            os.close(fd)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed its DevTools pipe (its log: {self.log})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def page(self, method: str, **params) -> dict:
        return self.call(method, session=True, **params)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def open_report(exe: str, html: Path, profile: Path, shot: Path) -> dict:
    """Load the page, collect console errors and requests, the rendered text, each plot's box and a full-page
    screenshot."""
    b = Chromium(exe, profile)
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.page(f"{domain}.enable")
        b.page("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1, mobile=False)
        b.page("Page.navigate", url=html.resolve().as_uri())
        b.wait_event("Page.loadEventFired")
        height = b.page("Runtime.evaluate", expression="document.documentElement.scrollHeight",
                        returnByValue=True)["result"]["value"]
        b.page("Emulation.setDeviceMetricsOverride", width=WIDTH, height=int(height), deviceScaleFactor=1, mobile=False)
        boxes = b.page("Runtime.evaluate", returnByValue=True, expression="""JSON.stringify(
            [...document.querySelectorAll('img, svg')].map(e => { const r = e.getBoundingClientRect();
              return {tag: e.tagName, alt: e.getAttribute('alt'), complete: e.complete !== false,
                      natural: e.naturalWidth || 0, x: r.left + scrollX, y: r.top + scrollY,
                      w: r.width, h: r.height}; }))""")
        text = b.page("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)["result"]["value"]
        data = b.page("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        shot.write_bytes(base64.b64decode(data))
        events = list(b.events)
    finally:
        b.close()
    errors = [e["params"]["entry"]["text"] for e in events if e.get("method") == "Log.entryAdded"
              and e["params"]["entry"]["level"] == "error"]
    errors += [str(e["params"]["args"]) for e in events if e.get("method") == "Runtime.consoleAPICalled"
               and e["params"]["type"] in ("error", "assert")]
    errors += [e["params"]["exceptionDetails"].get("text", "exception") for e in events
               if e.get("method") == "Runtime.exceptionThrown"]
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return {"errors": errors, "requests": requests, "text": text, "boxes": json.loads(boxes["result"]["value"]),
            "height": height}


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium not found: install it (apt-get install -y --no-install-recommends chromium) "
                    "to run the browser test")
    return exe


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_model_dir, benign_jsonl):
    from test_report_html import demo_run

    return demo_run(tmp_path_factory, tiny_model_dir, benign_jsonl)


def test_report_html_in_headless_chromium(chromium, demo, tmp_path):
    check_page(chromium, demo["out"] / "report.html", demo["results"], tmp_path, plots=5)


def test_report_html_of_several_attack_families_in_headless_chromium(chromium, demo, tmp_path):
    """The families' log-dollar plots and their wide cost-to-undo table render too."""
    from test_report_html import multi_family_run

    run = multi_family_run(demo, tmp_path / "multi")
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    rendered = check_page(chromium, run / "report.html", results, tmp_path, plots=7)
    assert "Refusal against cost, every attack family" in rendered and "cheapest: ablation" in rendered


def check_page(chromium: str, html: Path, results: dict, tmp_path: Path, plots: int) -> str:
    """Load ``html``: no console error, no request, the headline shown, ``plots`` inline plots, none blank, none
    overflowing the page. Returns the rendered text."""
    from PIL import Image, ImageStat

    shot = tmp_path / "report.png"
    got = open_report(chromium, html, tmp_path / "profile", shot)
    print(f"screenshot: {shot} ({got['height']} px tall)")
    assert got["errors"] == [], got["errors"]
    # the only request is the page itself: no network, no external resource (data: URIs are not requests)
    assert [u for u in got["requests"] if not u.startswith(("file:", "data:"))] == []
    rendered = " ".join(got["text"].split())
    assert " ".join(results["summary"]["headline"].split()) in rendered
    for title in ("How to read this", "Refusal against attack cost", "Judge agreement", "Provenance"):
        assert title in rendered

    assert len([b for b in got["boxes"] if b["tag"] == "IMG"]) == plots, got["boxes"]
    page = Image.open(shot).convert("RGB")
    assert page.width == WIDTH
    for b in got["boxes"]:
        assert b["complete"] and b["w"] > 200 and b["h"] > 100, b  # decoded and laid out at a readable size
        assert b["x"] >= 0 and b["x"] + b["w"] <= WIDTH, b  # inside the page, no horizontal overflow
        box = page.crop((int(b["x"]), int(b["y"]), int(b["x"] + b["w"]), int(b["y"] + b["h"])))
        assert max(ImageStat.Stat(box).var) > 0, f"blank plot: {b['alt']}"
    # the inline PNGs themselves: decodable, not blank
    import re

    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html.read_text(encoding="utf-8")):
        img = Image.open(io.BytesIO(base64.b64decode(data))).convert("L")
        assert ImageStat.Stat(img).var[0] > 0
    return rendered
