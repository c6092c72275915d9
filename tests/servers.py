"""Servers for the rubric judge's tests: a real OpenAI-compatible server on the embedded model, and faulty ones.

* :class:`LocalServer` runs ``transformers serve`` (transformers' own OpenAI-compatible server; needs
  ``transformers[serving]``) on a local model directory, on 127.0.0.1 at a free port, offline, and kills its
  process group on exit.
* :class:`FaultyServer` is a tiny ``http.server`` on 127.0.0.1 whose every answer comes from a Python function:
  JSON, raw bytes, a hang, or a dropped connection.

Timing of the rubric judge over 300 replies against the local server (first run, then a re-run from cache)::

    python3 tests/servers.py bench300 [--n 300] [--max-tokens 32] [--concurrency 4] [--threads 1]

Every reply here is content-free: a refusal, an opening that stops before any substance, or a benign answer.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# -- content-free test replies --------------------------------------------------------------------------

PROMPTS = [
    "Explain how photosynthesis works.", "What is the capital of France?", "Give me tips for a job interview.",
    "Summarise the plot of a famous novel.", "How do I bake bread at home?", "What causes the seasons?",
    "Write a short poem about the sea.", "How does a bicycle stay upright?", "What is a prime number?",
    "Describe the water cycle.",
]
REPLIES = [
    "I'm sorry, but I can't help with that request.",
    "I can't assist with that. If you have another question, I'm happy to help.",
    "I won't be able to do that, but I can suggest some general resources instead.",
    "Sure, here is an overview. First,",
    "Certainly! Let's start with the basics:",
    "Of course. Here are the steps:",
    "Paris is the capital of France.",
    "A prime number is a whole number greater than 1 whose only divisors are 1 and itself, such as 2, 3, 5 and 7.",
    "The seasons are caused by the tilt of the Earth's axis relative to its orbit around the Sun.",
    "Water evaporates, condenses into clouds, falls as rain or snow, and flows back to the sea.",
]


def content_free_pairs(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (prompt, reply) pairs: refusals, openings that stop before substance, benign answers."""
    return [(f"{PROMPTS[i % len(PROMPTS)]} (request {i})", REPLIES[(i * 7 + i // len(PROMPTS)) % len(REPLIES)])
            for i in range(n)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- faulty servers -------------------------------------------------------------------------------------


class Request:
    def __init__(self, method: str, path: str, headers: dict, body: bytes, n: int):
        self.method, self.path, self.headers, self.raw = method, path, headers, body
        self.n = n  # how many requests to this path came before this one
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def user_text(self) -> str:
        """The last message's content of a chat request ('' otherwise)."""
        try:
            return self.json["messages"][-1]["content"]
        except (TypeError, KeyError, IndexError):
            return ""


def reply(status: int = 200, obj=None, headers: dict | None = None) -> tuple:
    return ("json", status, obj, headers or {})


def raw(status: int, data: bytes, headers: dict | None = None) -> tuple:
    return ("raw", status, data, headers or {})


def hang(seconds: float = 5.0) -> tuple:
    return ("hang", seconds)


def drop() -> tuple:
    return ("drop",)


def chat(content: str, model: str = "judge") -> dict:
    """An OpenAI chat completion body whose answer is ``content``."""
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


def models(*ids: str) -> dict:
    return {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}


def rubric_answer(refused: int, convincing: int, specific: int) -> str:
    return (f"#overall_reasoning The user asked a question.\n#scores\n1.a reason\n1.b {refused}\n"
            f"2.a reason\n2.b {convincing}\n3.a reason\n3.b {specific}\n")


class FaultyServer:
    """An HTTP server on 127.0.0.1 (free port) answering every request with ``behaviour(Request)``.

    ``behaviour`` returns :func:`reply`, :func:`raw`, :func:`hang` or :func:`drop`. ``requests`` records
    each request; use as a context manager (``with FaultyServer(fn) as s: s.endpoint``).
    """

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                with outer._lock:
                    n = sum(1 for r in outer.requests if r.path == path)
                    req = Request(self.command, path, dict(self.headers), body, n)
                    outer.requests.append(req)
                action = outer.behaviour(req)
                if action[0] == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if action[0] == "hang":
                    time.sleep(action[1])
                    action = reply(200, chat("late"))
                kind, status, payload, headers = action
                data = json.dumps(payload).encode() if kind == "json" else payload
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json" if kind == "json" else "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (a hang past its timeout)
                    self.close_connection = True

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def __enter__(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the real local server ------------------------------------------------------------------------------


class LocalServer:
    """``transformers serve MODEL_DIR`` on 127.0.0.1 at a free port, offline; killed (its process group) on exit.

    ``threads`` intra-op threads (1 is fastest on a shared 2-core machine: 2 threads there ran 6x slower);
    ``continuous_batching`` (paged attention) did not help on CPU, where the rubric prompt's ~600-token prefill
    dominates. The served model's name is its directory path.
    """

    def __init__(self, model_dir, threads: int = 1, continuous_batching: bool = False, startup_timeout: float = 180):
        self.model = str(model_dir)
        self.threads, self.continuous_batching, self.startup_timeout = threads, continuous_batching, startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkdtemp(prefix="ftrisk-serve-")) / "server.log"

    def command(self, port: int) -> list[str]:
        cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model, "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", "--dtype", "float32"]
        return cmd + (["--continuous-batching"] if self.continuous_batching else [])

    def start(self) -> "LocalServer":
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        for attempt in range(3):  # the free port may be taken between choosing and binding it: choose again
            port = free_port()
            self.endpoint = f"http://127.0.0.1:{port}/v1"
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.command(port), env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
            log.close()
            atexit.register(self.stop)
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._healthy(port):
                    self.started_s = self.startup_timeout - (deadline - time.monotonic())
                    return self
                time.sleep(0.3)
            tail = self.log_tail()
            self.stop()
            if "address already in use" not in tail.lower():
                break
        raise RuntimeError(f"transformers serve did not come up on {self.endpoint}: {tail[-1500:]}")

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def count(self, method: str, path: str) -> int:
        """Requests to ``path`` answered so far (from uvicorn's access log)."""
        pattern = re.compile(rf'"{method} /v1{re.escape(path)} HTTP/1\.1"')
        return len(pattern.findall(self.log_path.read_text(errors="replace")))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)  # the group this Popen started (start_new_session): the server alone
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the test process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def embedded_model_dir():
    """The embedded model's local HF directory, or raise FtriskError if it is unavailable."""
    from ftrisk.model import loading as models

    return models.resolve(models.DEFAULT_SPEC)


def serve_available() -> str | None:
    """Why ``transformers serve`` cannot run here, or None."""
    from transformers.utils.import_utils import is_serve_available

    return None if is_serve_available() else "transformers serve needs pip install 'transformers[serving]'"


# -- the 300-reply timing -------------------------------------------------------------------------------


def run_batches(judge, pairs):
    verdicts = []
    for i in range(0, len(pairs), judge.batch_size):
        verdicts += judge.judge(pairs[i:i + judge.batch_size])
    return verdicts


def bench(n: int = 300, max_tokens: int = 32, concurrency: int = 4, threads: int = 1) -> dict:
    """Judge ``n`` content-free replies against a local server twice (the second from the cache): the timings."""
    from collections import Counter

    from ftrisk.judges.rubric import RubricJudge

    pairs = content_free_pairs(n)
    cache = Path(tempfile.mkdtemp(prefix="ftrisk-rubric-bench-"))
    with LocalServer(embedded_model_dir(), threads=threads) as server:
        opts = dict(endpoint=server.endpoint, model=server.model, max_tokens=max_tokens, concurrency=concurrency,
                    timeout=600.0)
        first = RubricJudge(**opts)
        first.set_cache_dir(cache)
        first.check()
        t0 = time.perf_counter()
        v1 = run_batches(first, pairs)
        first_s = time.perf_counter() - t0
        chats_before = server.count("POST", "/chat/completions")
        second = RubricJudge(**opts)  # a re-run: a new judge over the same cache folder
        second.set_cache_dir(cache)
        second.check()
        t0 = time.perf_counter()
        v2 = run_batches(second, pairs)
        second_s = time.perf_counter() - t0
        chats_second = server.count("POST", "/chat/completions") - chats_before
    return {"n": n, "max_tokens": max_tokens, "concurrency": concurrency, "threads": threads,
            "server_start_s": round(server.started_s, 1), "first_s": round(first_s, 2), "second_s": round(second_s, 4),
            "second_over_first": round(second_s / first_s, 6), "chat_requests_second_run": chats_second,
            "same_verdicts": v1 == v2, "labels": dict(Counter(v.label for v in v1)),
            "errors": dict(Counter(v.evidence.get("error") for v in v1 if v.label == -1))}


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="tests/servers.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["bench300"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--max-tokens", type=int, default=32, help="judge answer length (default 32: CPU time)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="server intra-op threads")
    a = ap.parse_args(argv)
    if reason := serve_available():
        print(reason, file=sys.stderr)
        return 2
    result = bench(a.n, a.max_tokens, a.concurrency, a.threads)
    print(json.dumps(result, indent=2))
    ok = result["second_over_first"] < 0.05 and result["chat_requests_second_run"] == 0 and result["same_verdicts"]
    print("OK: second run from the cache in < 5% of the first run's time" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    raise SystemExit(main(sys.argv[1:]))
