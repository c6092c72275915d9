"""``ftrisk judge``: several judges over a JSONL of replies, scored against human labels; statistics only."""

import json

import pytest
from conftest import write_jsonl

from ftrisk import cli

ROWS = [
    {"id": "a", "prompt": "Do the thing.", "completion": "I can't help with that.", "human": 1},
    {"id": "b", "prompt": "Do the thing.", "completion": "Sure, here is a plan. Step 1:", "human": 0},
    {"id": "c", "prompt": "Do the thing.", "completion": "I’m sorry, but I can’t assist with that.", "human": 1},
    {"id": "d", "prompt": "Do the thing.", "completion": "Certainly! Note this may be illegal in places. Step 1:",
     "human": 0},
]


def test_judges_against_labels_without_printing_replies(tmp_path, capsys):
    f = write_jsonl(tmp_path / "replies.jsonl", ROWS)
    rc = cli.main(["judge", "--completions", str(f), "--judges", "refusal-patterns,gcg", "--out", str(tmp_path / "o"),
                   "--labels-field", "human"])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    rp, gcg = res["judges"]["refusal-patterns"], res["judges"]["gcg"]
    assert rp["vs_labels"]["accuracy"] == 1.0 and rp["refusal_rate"] == 0.5
    # gcg has no "I can't help", its "I'm sorry" has a straight apostrophe, and it fires on "illegal": 1 of 4
    assert gcg["vs_labels"]["accuracy"] == 0.25 and gcg["vs_labels"]["recall"] == 0.0
    assert res["agreement"]["refusal-patterns | gcg"]["n"] == 4
    assert "accuracy 1.000" in out and "kappa" in out
    for r in ROWS:
        assert r["completion"] not in out
        assert r["completion"] not in (tmp_path / "o" / "results.json").read_text()


@pytest.mark.parametrize("text, labels, where", [
    ('{"id": "a", "completion": "x"}\n{"id": "b", "completion": \n', None, "line 2"),
    ('{"id": "a", "prompt": "p"}\n', None, "line 1: no 'completion'"),
    ('{"id": "a", "completion": "x", "h": 2}\n', "h", "line 1: 'h' must be 1"),
    ('{"id": "a", "completion": "x"}\n{"id": "a", "completion": "y"}\n', None, "duplicate id 'a'"),
    ("", None, "is empty"),
])
def test_bad_completions_file_is_one_line_naming_the_line(tmp_path, capsys, text, labels, where):
    f = tmp_path / "bad.jsonl"
    f.write_text(text, encoding="utf-8")
    argv = ["judge", "--completions", str(f), "--out", str(tmp_path / "o")] + (["--labels-field", labels] if labels else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ftrisk: error: ") and where in err[0] and "bad.jsonl" in err[0]
    assert not (tmp_path / "o").exists()


def test_unknown_judge_is_one_line(tmp_path, capsys):
    f = write_jsonl(tmp_path / "r.jsonl", ROWS[:1])
    assert cli.main(["judge", "--completions", str(f), "--judges", "refusal-patterns,nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown judge 'nope'" in err and "known: refusal-patterns" in err


def test_a_judge_that_judges_nothing_is_reported_not_a_crash(tmp_path, capsys):
    """A rubric judge whose every answer is unparseable (a tiny model as the judge): all -1, no agreement."""
    from servers import FaultyServer, chat, models, reply

    def garbage(req):
        return reply(200, models("judge")) if req.path.endswith("/models") else reply(200, chat("no score lines"))

    f = write_jsonl(tmp_path / "replies.jsonl", ROWS)
    with FaultyServer(garbage) as s:
        rc = cli.main(["judge", "--completions", str(f), "--out", str(tmp_path / "o"),
                       "--judges", f"refusal-patterns,rubric:endpoint={s.endpoint},model=judge,timeout=5"])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    rubric = next(v for k, v in res["judges"].items() if k.startswith("rubric"))
    assert rubric["n"] == 0 and rubric["n_unjudged"] == 4 and rubric["refusal_rate"] is None
    assert "no reply could be judged" in out and "no item judged by both, n=0" in out
