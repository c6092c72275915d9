"""The one-line progress of a whole run: stage k of n, elapsed, an estimate once a stage has finished."""

from ftrisk.progress import Progress


def test_progress_line_text(capsys):
    p = Progress(3)
    p.begin("evaluate base")
    p.begin("harden")
    p.done()
    err = capsys.readouterr().err.replace("\r", "\n")
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    assert any(line.startswith("ftrisk run: stage 1/3 evaluate base · ") for line in lines), lines
    # the second stage knows how long the first took, so it estimates what remains
    assert any(line.startswith("ftrisk run: stage 2/3 harden · ") and "min left (estimate)" in line for line in lines)
    assert lines[-1].startswith("ftrisk run: 2 stages in ")
    assert not any(", stage" in line for line in lines)


def test_remaining_uses_the_mean_of_finished_stages_of_the_same_kind():
    p = Progress(4)
    p.kinds, p.durations, p.current = ["evaluate", "harden"], {"evaluate": [60.0]}, ("harden", 0.0)
    # harden in progress, no harden finished: half the mean of all finished stages; 2 stages left, evaluations
    assert p.remaining() == 30.0 + 2 * 60.0
    p.bar.close()


def test_nothing_is_drawn_before_the_first_stage(capsys):
    p = Progress(2)
    print("plan: fits", file=__import__("sys").stderr)  # what ftrisk run prints once inputs are checked
    p.begin("evaluate base")
    p.done()
    err = capsys.readouterr().err.replace("\r", "\n")
    assert err.startswith("plan: fits\n")
