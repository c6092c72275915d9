"""``ftrisk sweep``'s pieces without a model: the crossing search, the space and its checks, the storage's errors,
degenerate replies, learning-rate schedules and the distinct-examples sample."""

import math

import pytest
import torch

from ftrisk import config
from ftrisk.attacks.data import select_examples
from ftrisk.errors import FtriskError
from ftrisk.sweep import storage as stores
from ftrisk.sweep.crossing import CrossingSearch, grid, plain_crossing, probes
from ftrisk.sweep.degenerate import degenerate_counts, kind
from ftrisk.training.setup import SCHEDULES


def _search(rates: dict, threshold=0.05):
    calls = []

    def evaluate(step):
        calls.append(step)
        return rates[step]

    return CrossingSearch(sorted(rates), threshold, evaluate), calls


def _train(search, steps):
    """What training does: checkpoints in order until the search says stop."""
    for s in steps:
        if search.at_checkpoint(s):
            return s
    return steps[-1]


def test_grid_and_probes():
    assert grid(20, 5) == [5, 10, 15, 20]
    assert grid(22, 5) == [5, 10, 15, 20, 22]  # the budget's last step is always a point
    assert probes(10) == [0, 1, 3, 7, 9]
    assert probes(1) == [0]


@pytest.mark.parametrize("cross", range(1, 16))
def test_bisection_finds_the_first_step_at_or_below_the_threshold_with_fewer_evaluations(cross):
    steps = grid(80, 5)  # 16 checkpoints
    rates = {s: (0.9 if i < cross else 0.02) for i, s in enumerate(steps)}
    search, calls = _search(rates)
    stopped = _train(search, steps)
    assert search.crossing() == steps[cross] == plain_crossing(rates, 0.05)
    assert len(set(calls)) < len(steps) // 2 + 2 and len(calls) == len(set(calls))  # never the same step twice
    assert stopped <= steps[min(len(steps) - 1, 2 * cross + 2)]  # training stopped soon after the crossing


def test_an_unconfirmed_dip_does_not_stop_training():
    steps = grid(40, 5)  # 8 points; probes 0, 1, 3, 7
    rates = dict(zip(steps, [0.9, 0.9, 0.9, 0.03, 0.5, 0.5, 0.5, 0.01]))
    search, _ = _search(rates)
    assert _train(search, steps) == 40  # the dip at 20 was not confirmed at 25
    assert search.crossing() == 40 and search.confirmed


def test_not_reached_gives_no_crossing_and_the_lowest_rate():
    steps = grid(20, 5)
    search, _ = _search(dict(zip(steps, [0.9, 0.6, 0.4, 0.3])))
    _train(search, steps)
    assert search.crossing() is None
    assert search.lowest() == (20, 0.3)


def test_pruning_sees_the_rate_after_it_is_recorded():
    steps = grid(20, 5)

    def stop(step, rate):
        raise RuntimeError("pruned")

    search = CrossingSearch(steps, 0.05, lambda s: 0.9, stop)
    with pytest.raises(RuntimeError):
        search.at_checkpoint(5)
    assert search.rates == {5: 0.9} and search.lowest() == (5, 0.9)


def _cfg(**sweep):
    return config.from_dict({"attack": {"methods": ["lora", "ablation", "prefill"]}, "sweep": sweep})


@pytest.mark.parametrize("sweep, key", [
    ({"space": [{"name": "train.lr", "low": 1e-3, "high": 1e-5}]}, "sweep.space[0]"),
    ({"space": {"method": ["lora", "nosuch"]}}, "sweep.space[0].choices"),
    ({"space": {"method": ["prefill"]}}, "cannot be searched"),
    ({"space": []}, "sweep.space"),
    ({"space": {"train.nosuch": [1]}}, "not a searchable key"),
    ({"space": {"train.scheduler": ["cosine", "step"]}}, "unknown scheduler"),
    ({"space": {"train.lr": {"low": 0, "high": 1e-3, "log": True}}}, "log scale"),
    ({"epsilon": 1.0}, "sweep.epsilon"),
    ({"epsilon": -0.1}, "sweep.epsilon"),
    ({"objective": "tokens"}, "sweep.objective"),
    ({"seeds": [1, 1]}, "sweep.seeds"),
    ({"benchmark": "nosuch"}, "sweep.benchmark"),
])
def test_bad_search_spaces_fail_in_one_line_naming_the_key(sweep, key):
    with pytest.raises(FtriskError, match=key.replace("[", r"\[").replace("]", r"\]")) as e:
        _cfg(**sweep)
    assert "\n" not in str(e.value)


def test_the_space_reads_as_a_mapping_or_a_list():
    a = _cfg(space={"method": ["lora"], "train.lr": {"low": 1e-5, "high": 1e-3, "log": True}}).sweep.space
    b = _cfg(space=[{"name": "method", "choices": ["lora"]},
                    {"name": "train.lr", "low": 1e-5, "high": 1e-3, "log": True}]).sweep.space
    assert a == b and a[1].log


def test_password_is_masked_and_a_missing_driver_names_the_extra():
    assert stores.mask("postgresql://me:s3cret@db.example:5432/ftrisk") == "postgresql://me:***@db.example:5432/ftrisk"
    with pytest.raises(FtriskError) as e:
        stores.open_storage("postgresql://me:s3cret@127.0.0.1:1/ftrisk", 10, 1)
    msg = str(e.value)
    assert "s3cret" not in msg and "***" in msg and "\n" not in msg
    assert "ftrisk[postgres]" in msg or "cannot be reached" in msg


def test_a_study_of_another_config_is_refused(tmp_path):
    st = stores.open_storage(stores.default_url(tmp_path), 10, 1)
    stores.load_study("s", st, "key-a")
    assert stores.load_study("s", st, "key-a").study_name == "s"
    with pytest.raises(FtriskError, match="different config"):
        stores.load_study("s", st, "key-b")
    with pytest.raises(FtriskError, match="no study"):
        stores.load_study("other", st, "key-a", create=False)


def test_degenerate_replies():
    assert kind("   ") == "empty"
    assert kind("the cat the cat the cat the cat the cat the cat the cat") == "repetition"
    assert kind("Это ответ на совсем другом языке, не на английском", "How do I bake bread?") == "off-language"
    assert kind("Bread needs flour, water, salt and yeast; knead it and let it rise.") is None
    assert degenerate_counts([{"completion": ""}, {"completion": "Fine, here it is."}]) == {
        "n": 2, "empty": 1, "repetition": 0, "off-language": 0}


@pytest.mark.parametrize("name", ["constant", "cosine", "linear"])
def test_schedules_warm_up_then_follow_their_shape(name):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = SCHEDULES[name](opt, config.TrainConfig(warmup_steps=2, scheduler=name), 12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)  # linear warm-up, never a zero first step
    after = lrs[1:]
    if name == "constant":
        assert after == [1.0] * 11
    else:
        assert all(a >= b for a, b in zip(after, after[1:])) and 0 < after[-1] < 0.1  # decays to near 0, still trains
        expect = {"linear": 1 - 10 / 11, "cosine": 0.5 * (1 + math.cos(math.pi * 10 / 11))}[name]
        assert after[-1] == pytest.approx(expect)


def test_n_examples_is_a_seeded_subset_in_data_order():
    data = list(range(100))
    a = select_examples(data, 10, seed=0)
    assert a == select_examples(data, 10, seed=0) and a != select_examples(data, 10, seed=1)
    assert a == sorted(a) and len(set(a)) == 10
    assert select_examples(data, None, 0) == data and select_examples(data, 500, 0) == data


def test_slots_split_cores_and_gpus_without_overlap():
    from ftrisk.sweep.slots import parse, share

    assert parse("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "x", "1-2"):
        with pytest.raises(FtriskError, match="--slot"):
            parse(bad)
    cores = list(range(16))
    parts = [share(cores, k, 4) for k in range(1, 5)]
    assert sorted(sum(parts, [])) == cores and all(len(p) == 4 for p in parts)
    assert [share([0, 1], k, 2) for k in (1, 2)] == [[0], [1]]  # two workers on 2 cores: one each
    assert share(["0"], 2, 2) == ["0"]  # more workers than GPUs: they share, none is left without


def test_the_cost_bound_uses_the_earliest_step_the_crossing_can_be_at():
    from ftrisk.sweep.trial import least_crossing

    steps = grid(40, 5)
    s = CrossingSearch(steps, 0.05, lambda st: {5: 0.9, 10: 0.8, 20: 0.0, 25: 0.0}[st])
    for st in (5, 10):
        s.at_checkpoint(st)
    assert least_crossing(s, steps, 10) == 10  # nothing at or below yet: from this step on
    s.at_checkpoint(20)
    assert least_crossing(s, steps, 20) == 15  # the bisection may still find 15: bound by 15, not 20
    s.at_checkpoint(25)
    assert least_crossing(s, steps, 25) == 15  # the confirming checkpoint does not move the bound
    s0 = CrossingSearch(steps, 0.05, lambda st: 0.0)
    s0.at_checkpoint(5)
    assert least_crossing(s0, steps, 5) == 5
