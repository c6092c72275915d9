"""The verdict store: any judge over stored completions, resumable batch by batch (a crash or a kill loses at most
the batch in flight, nothing is judged twice), stale verdicts re-judged, transient failures asked again."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftrisk.judges import Judge, Verdict
from ftrisk.judges.store import judge_dir, judge_rows


class Counting(Judge):
    """Refuses every reply that starts with "No"; counts what it was asked; can fail or sleep on demand."""

    kind = "counting"
    batch_size = 3

    def __init__(self, fail_on=None, sleep=0.0, transient_on=()):
        super().__init__()
        self.asked, self.fail_on, self.sleep, self.transient_on = [], fail_on, sleep, set(transient_on)

    def judge(self, pairs):
        time.sleep(self.sleep)
        out = []
        for prompt, completion in pairs:
            if completion == self.fail_on:
                raise KeyboardInterrupt("killed mid-batch")
            self.asked.append(completion)
            if completion in self.transient_on:
                out.append(Verdict(-1, None, {"error": "timeout", "transient": True}))
            elif completion.startswith("?"):
                out.append(Verdict(-1, None, {"error": "unparseable"}))
            else:
                out.append(Verdict(int(completion.startswith("No")), None, {"rule": "starts-with-no"}))
        return out


def rows(n=10):
    return [{"id": f"r{i}", "prompt": "a prompt", "completion": ("No thanks " if i % 2 else "Sure ") + str(i)}
            for i in range(n)]


def test_crash_mid_judging_loses_nothing_and_judges_nothing_twice(tmp_path):
    path = tmp_path / "v.jsonl"
    data = rows()
    with pytest.raises(KeyboardInterrupt):
        judge_rows(Counting(fail_on=data[7]["completion"]), data, path)  # dies in the third batch
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    assert [v["id"] for v in stored] == [f"r{i}" for i in range(6)]  # two whole batches survived
    with open(path, "a") as f:
        f.write('{"id": "r6", "lab')  # and a torn line from the kill
    again = Counting()
    out = judge_rows(again, data, path)
    assert again.asked == [r["completion"] for r in data[6:]]  # only what was missing
    assert [out[r["id"]]["label"] for r in data] == [i % 2 for i in range(10)]
    lines = path.read_text().splitlines()
    assert len(lines) == 10 and len({json.loads(x)["id"] for x in lines}) == 10
    assert all("completion" not in json.loads(x) and "Sure" not in x for x in lines)  # labels, never the text
    third = Counting()
    judge_rows(third, data, path)
    assert third.asked == []


def test_changed_completions_and_transient_failures_are_judged_again(tmp_path):
    path = tmp_path / "v.jsonl"
    data = rows(4) + [{"id": "t", "prompt": "p", "completion": "slow"}, {"id": "u", "prompt": "p", "completion": "?"}]
    first = Counting(transient_on={"slow"})
    out = judge_rows(first, data, path)
    assert out["t"]["label"] == -1 and out["u"]["label"] == -1
    data[1] = {**data[1], "completion": "Sure, regenerated"}
    second = Counting()
    out = judge_rows(second, data, path)
    # the regenerated reply and the timed-out one are asked again; an unparseable answer is kept as -1
    assert sorted(second.asked) == sorted(["Sure, regenerated", "slow"])
    assert out["r1"]["label"] == 0 and out["t"]["label"] == 0 and out["u"]["label"] == -1


def test_judge_folders_are_keyed_by_identity(tmp_path):
    from ftrisk import judges

    a, b = judges.build("gcg"), judges.build("gcg:mode=start")
    assert judge_dir(tmp_path, a) != judge_dir(tmp_path, b)
    assert judge_dir(tmp_path, a) == judge_dir(tmp_path, judges.build("gcg:mode=anywhere"))


KILL_SCRIPT = """
import sys, json
sys.path.insert(0, {tests!r})
from test_judge_store import Counting, rows
from ftrisk.judges.store import judge_rows
judge_rows(Counting(sleep=0.4), rows(30), {path!r})
"""


def test_kill_while_judging_then_rerun(tmp_path):
    """A real SIGKILL of a judging process: the re-run judges only what the killed one had not stored."""
    path = tmp_path / "v.jsonl"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 6):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {json.loads(x)["id"] for x in path.read_text().splitlines() if x.strip().endswith("}")}
    assert 6 <= len(done_before) < 30
    again = Counting()
    out = judge_rows(again, rows(30), path)
    assert len(again.asked) == 30 - len(done_before)
    assert len(out) == 30 and len(path.read_text().splitlines()) == 30
