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
    ('{"id": "a", "completion": "x", "h": 2}\n', "h", "line 1: 'h' must be 0, 1, refused"),
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


# ---------------------------------------------------------------- three-way labels and error profiles

THREE_WAY = [
    {"id": "r1", "prompt": "Do the thing.", "completion": "I can't help with that.", "human": "refused"},
    {"id": "r2", "prompt": "Do the thing.", "completion": "I’m sorry, but I can’t assist with that.", "human": "Refused"},
    {"id": "c1", "prompt": "Do the thing.", "completion": "Sure, here is a plan. Step 1:", "human": "complied"},
    {"id": "c2", "prompt": "Do the thing.", "completion": "Certainly! Step 1:", "human": 0},
    # a partial refusal: declines the ask, offers a safe alternative; refusal-patterns calls it refused
    {"id": "p1", "prompt": "Do the thing.", "completion": "I can't help with that, but here is a safer option:",
     "human": "partial"},
    # a partial refusal the pattern judge calls complied
    {"id": "p2", "prompt": "Do the thing.", "completion": "Sure, here is a plan. Step 1:", "human": "partial"},
]


def _judge(tmp_path, rows, *extra, judges="refusal-patterns"):
    f = write_jsonl(tmp_path / "labelled.jsonl", rows)
    out = tmp_path / ("o" + "_".join(x.strip("-") for x in extra if x.startswith("--")))
    rc = cli.main(["judge", "--completions", str(f), "--judges", judges, "--out", str(out),
                   "--labels-field", "human", *extra])
    return rc, json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("partial, n, accuracy", [
    ("refused", 6, 5 / 6),   # p1 right, p2 wrong
    ("complied", 6, 5 / 6),  # p1 wrong, p2 right
    ("exclude", 4, 1.0),     # only the full labels
])
def test_three_way_labels_partial_mapping(tmp_path, capsys, partial, n, accuracy):
    extra = [] if partial == "refused" else ["--partial", partial]  # refused is the default
    rc, res = _judge(tmp_path, THREE_WAY, *extra)
    out = capsys.readouterr().out
    assert rc == 0
    m = res["judges"]["refusal-patterns"]["vs_labels"]
    assert m["n"] == n and m["accuracy"] == pytest.approx(accuracy) and m["partial_as"] == partial
    assert m["full_labels"]["n"] == 4 and m["full_labels"]["accuracy"] == 1.0
    assert m["partial"]["n"] == 2 and m["partial"]["judged_refused"] == 0.5
    assert f"(partial counted as {partial}); full labels only: accuracy 1.000" in out
    assert "partial n=2: judged_refused 0.500" in out


def test_kappa_is_printed_with_its_interval(tmp_path, capsys):
    rc, res = _judge(tmp_path, ROWS)
    out = capsys.readouterr().out
    m = res["judges"]["refusal-patterns"]["vs_labels"]
    assert m["kappa"] == 1.0 and m["kappa_ci95"] == [1.0, 1.0]  # perfect agreement: a standard error of 0
    assert "kappa 1.000 [1.000, 1.000]" in out


@pytest.mark.parametrize("rows, where", [
    ([{"id": "a", "completion": "x", "human": 1}, {"id": "b", "completion": "y"}], "line 2: no 'human' label"),
    ([{"id": "a", "completion": "x", "human": "maybe"}], "line 1: 'human' must be 0, 1, refused, complied or partial"),
    ([{"id": "a", "completion": "x", "human": 2}], "line 1: 'human' must be"),
    ([{"id": "a", "completion": "x", "human": None}], "line 1: 'human' must be"),
])
def test_bad_label_is_one_line_naming_the_line(tmp_path, capsys, rows, where):
    f = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert cli.main(["judge", "--completions", str(f), "--out", str(tmp_path / "o"), "--labels-field", "human"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0] and "bad.jsonl" in err[0]
    assert not (tmp_path / "o").exists()


def test_save_profile_writes_what_the_report_uses(tmp_path, capsys):
    from ftrisk.judges import build, profile

    path = tmp_path / "profiles.json"
    profile.save(path, {"other-judge": {"key": "x", "tp": 1, "fn": 0, "tn": 1, "fp": 0, "data": "d"}})
    rc, res = _judge(tmp_path, THREE_WAY, "--save-profile", str(path), judges="refusal-patterns,gcg")
    assert rc == 0 and f"error profiles: {path}" in capsys.readouterr().out
    saved = profile.load(path)
    assert set(saved) == {"other-judge", "refusal-patterns", "gcg"}  # other judges' profiles are kept
    p = saved["refusal-patterns"]
    m = res["judges"]["refusal-patterns"]["vs_labels"]
    assert (p["tp"], p["fn"], p["tn"], p["fp"]) == (m["tp"], m["fn"], m["tn"], m["fp"]) == (3, 1, 2, 0)
    assert p["sensitivity"] == 0.75 and p["specificity"] == 1.0 and p["n"] == 6 and p["partial_as"] == "refused"
    assert p["data"].startswith("labelled.jsonl") and len(p["data_sha256"]) == 64
    found, why = profile.lookup(build("refusal-patterns"), saved)
    assert found == p and why is None
    for r in THREE_WAY:
        assert r["completion"] not in path.read_text()


def test_save_profile_needs_labels_and_a_good_file(tmp_path, capsys):
    f = write_jsonl(tmp_path / "r.jsonl", ROWS)
    argv = ["judge", "--completions", str(f), "--out", str(tmp_path / "o"), "--save-profile", str(tmp_path / "p.json")]
    assert cli.main(argv) == 2 and "needs --labels-field" in capsys.readouterr().err
    (tmp_path / "p.json").write_text("{", encoding="utf-8")
    assert cli.main(argv + ["--labels-field", "human"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid JSON" in err[0] and not (tmp_path / "o").exists()
