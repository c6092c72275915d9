"""``ftrisk sweep`` end to end on a tiny random Llama (no hardening): the study, its records and reports, resuming,
and two workers sharing one SQLite study with one of them killed mid-trial."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from ftrisk import config
from ftrisk.errors import FtriskError
from ftrisk.sweep.run import sweep

pytestmark = [pytest.mark.usefixtures("torch_single_thread"), pytest.mark.heavy]


def _cfg_dict(model_dir, out, trials=4, **sweep_extra):
    return {"model": {"spec": str(model_dir)}, "output_dir": str(out), "harden": {"enabled": False},
            "attack": {"methods": ["lora", "ablation"], "train": {"max_steps": 6, "batch_size": 4, "max_seq_len": 64},
                       "ablation": {"n_train": 8, "n_val": 4, "positions": 2}},
            "eval": {"benchmarks": [{"name": "advbench-test", "limit": 4}, {"name": "xstest-safe", "limit": 3}],
                     "judges": ["gcg"]},
            "generation": {"max_new_tokens": 4, "batch_size": 8}, "capability": {"enabled": False},
            "sweep": {"trials": trials, "checkpoint_every": 2, "seeds": [0, 1], "top_k": 1, "startup_trials": 8,
                      "space": {"method": ["lora", "ablation"], "train.lr": {"low": 1e-4, "high": 1e-3, "log": True},
                                "train.max_steps": {"low": 4, "high": 8}, "ablation.layer": {"low": 0.6, "high": 1.0}},
                      **sweep_extra}}


def _study(out, name="ftrisk-run"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


@pytest.fixture(scope="module")
def swept(torch_single_thread, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTRISK_CACHE", str(root / "cache"))
        cfg = config.from_dict(_cfg_dict(tiny_model_dir, root / "out", audit_trials=1))
        res = sweep(cfg)
    return {"root": root, "out": root / "out", "res": res, "model_dir": tiny_model_dir}


def test_the_study_records_every_trial_and_the_worst_case(swept):
    res, out = swept["res"], swept["out"]
    trials = res["trials"]
    assert len([t for t in trials if t["state"] in ("complete", "pruned")]) == 4
    assert trials[0]["recipe"] and trials[0]["settings"] == {}  # trial 0: the config's own recipe, unchanged
    w = res["summary"]["worst_case"]
    best = min((t for t in trials if t["state"] == "complete" and t["feasible"]), key=lambda t: t["value"])
    assert w["trial"] == best["number"] and w["usd"] == best["cost"]["usd"]
    assert w["seeds"] == [0, 1] and w["usd_range"][0] <= w["usd"] <= w["usd_range"][1]  # re-run with seed 1
    assert res["seed_trials"] and all(s["of"] == best["number"] for s in res["seed_trials"])
    assert "attack.methods=null" in w["overrides"] and res["summary"]["headline"].startswith("The cheapest attack")
    for t in trials:  # each trial's outputs under the run folder by number
        if t["state"] in ("complete", "pruned"):
            assert (out / t["folder"] / "record.json").is_file()


def test_the_audit_compares_the_bisection_with_the_plain_schedule(swept):
    eff = swept["res"]["efficiency"]
    assert eff["trials"] == [0]
    c = eff["crossings"][0]
    assert c["plain_evaluations"] == len(swept["res"]["trials"][0]["audit"]["plain_rates"])
    assert eff["tokens_plain"] > eff["tokens_search"] > 0


def test_reports_hold_statistics_not_completions(swept):
    out = swept["out"]
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "data:image/png;base64," in html and "Top trials" in md
    replies = [json.loads(x)["completion"] for f in out.glob("trials/*/eval/*/*.completions.jsonl")
               for x in f.read_text().splitlines()]
    assert replies
    for r in replies:
        if len(r.strip()) >= 12:
            assert r not in html and r not in md


def test_a_rerun_redoes_no_trial_and_more_trials_extend_the_study(swept, monkeypatch):
    out = swept["out"]
    monkeypatch.setenv("FTRISK_CACHE", str(swept["root"] / "cache"))
    before = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/record.json")}
    n = len(_study(out).trials)
    sweep(config.from_dict(_cfg_dict(swept["model_dir"], out, audit_trials=1)))
    assert len(_study(out).trials) == n
    assert {p: p.stat().st_mtime_ns for p in out.glob("trials/*/record.json")} == before
    res = sweep(config.from_dict(_cfg_dict(swept["model_dir"], out, trials=5, audit_trials=1)))
    assert len([t for t in res["trials"] if t["state"] in ("complete", "pruned")]) == 5


def test_another_config_in_the_same_storage_gets_one_line(swept, monkeypatch):
    monkeypatch.setenv("FTRISK_CACHE", str(swept["root"] / "cache"))
    d = _cfg_dict(swept["model_dir"], swept["out"], audit_trials=1)
    d["attack"]["train"]["batch_size"] = 2
    with pytest.raises(FtriskError, match="different config"):
        sweep(config.from_dict({**d, "output_dir": str(swept["root"] / "other")}),
              storage=f"sqlite:///{swept['out'] / 'study.db'}")


STUDY = "ftrisk-sweep"


def _spawn(cfg_path, *extra, env):
    return subprocess.Popen([sys.executable, "-W", "ignore", "-m", "ftrisk", "sweep", str(cfg_path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)


def test_two_workers_share_a_study_and_a_killed_trial_is_retried(tiny_model_dir, tmp_path):
    """A coordinator and a worker on one SQLite study; the worker is killed (-9) mid-trial: its trial fails, is
    retried in the same folder with the same parameters, the study completes, nothing is counted twice."""
    out = tmp_path / "out"  # the config file's stem names the run, and so the study
    cfg_path = tmp_path / "sweep.yaml"
    cfg_path.write_text(yaml.safe_dump(_cfg_dict(tiny_model_dir, out, trials=10, heartbeat_seconds=1)))
    env = {**os.environ, "FTRISK_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    coord = _spawn(cfg_path, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "study.db").exists():
        time.sleep(0.5)
    while time.time() < deadline:  # the coordinator's first trial has started: the subject's stages are done
        try:
            if _study(out, STUDY).trials:
                break
        except Exception:  # noqa: BLE001 -- the database is being created
            pass
        time.sleep(0.5)
    worker = _spawn(cfg_path, "--worker", env=env)
    killed = None
    while time.time() < deadline and killed is None and worker.poll() is None:
        running = [t.number for t in _study(out, STUDY).trials if t.state.name == "RUNNING"
                   and t.user_attrs.get("worker", "").endswith(f":{worker.pid}")]
        if running:
            worker.send_signal(signal.SIGSTOP)  # frozen mid-trial, then checked: still running there?
            if _study(out, STUDY).trials[running[0]].state.name == "RUNNING":
                worker.send_signal(signal.SIGKILL)
                killed = running[0]
            else:
                worker.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    assert killed is not None, "the worker never ran a trial"
    worker.wait()
    log, _ = coord.communicate(timeout=600)
    assert coord.returncode == 0, log[-2000:]
    trials = _study(out, STUDY).trials
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 10  # none lost, none counted twice
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in failed] == [killed] and "fail_reason" not in failed[0].user_attrs
    retry = [t for t in finished if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].params == failed[0].params
    assert retry[0].user_attrs["folder"] == f"trials/trial-{killed}"  # resumed in the killed trial's folder
    assert len({t.user_attrs["folder"] for t in finished}) == 10
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["n_trials"] == 10


def test_defend_checks_the_durability_protocol_before_any_work(tiny_model_dir, tmp_path):
    from ftrisk.sweep.defend import check_protocol

    d = _cfg_dict(tiny_model_dir, tmp_path / "d")
    d["defenses"] = ["refusal-sft", "deep-alignment"]
    with pytest.raises(FtriskError, match="benign fine-tuning family.*two decades.*two schedulers.*3 sweep.seeds"):
        check_protocol(config.from_dict(d))
    d["defenses"] = ["nosuch"]
    with pytest.raises(FtriskError, match="unknown defense 'nosuch'"):
        check_protocol(config.from_dict(d))


def test_defend_scores_each_defense_in_attacker_dollars(tiny_model_dir, benign_jsonl, tmp_path, monkeypatch):
    """Two recipes from one base, the same sweep against each: per defense the worst case, its ratio to refusal-sft,
    capability and over-refusal against the base; ``ftrisk gate`` reads the result."""
    from ftrisk.cli import main
    from ftrisk.sweep.defend import defend

    monkeypatch.setenv("FTRISK_CACHE", str(tmp_path / "cache"))
    d = _cfg_dict(tiny_model_dir, tmp_path / "d", trials=2)
    d["harden"] = {"enabled": True, "harmful": ["harmbench-val"], "benign": str(benign_jsonl),
                   "benign_max_new_tokens": 4, "train": {"max_steps": 2, "batch_size": 4, "max_seq_len": 64}}
    d["attack"]["methods"] = ["lora", {"method": "lora", "label": "benign", "data": "builtin:benign"}]
    d["sweep"].update({"seeds": [0, 1, 2], "space": {"method": ["lora", "benign"],
                                                     "train.lr": {"low": 1e-5, "high": 1e-3, "log": True},
                                                     "train.scheduler": ["constant", "cosine"],
                                                     "train.max_steps": {"low": 4, "high": 6}}})
    d["defenses"] = ["refusal-sft", "deep-alignment"]
    res = defend(config.from_dict(d))
    assert set(res["defenses"]) == {"refusal-sft", "deep-alignment"}
    ref = res["defenses"]["refusal-sft"]
    assert ref["ratio_to_refusal_sft"] in (1.0, None)
    for name in res["defenses"]:
        assert (tmp_path / "d" / name / "results.json").is_file()  # one sweep per defense, in its own folder
        assert "over_refusal_delta_vs_base" in res["defenses"][name]
    assert "judge gcg" in res["scope"] and (tmp_path / "d" / "report.html").is_file()
    code = main(["gate", str(tmp_path / "d"), "--defense", "deep-alignment", "--min-usd", "1000000"])
    assert code == 1  # nobody spends a million dollars on a tiny model
