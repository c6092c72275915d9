"""Where a trained trial crosses the refusal threshold, found with few evaluations.

The trial saves a checkpoint every ``sweep.checkpoint_every`` steps (the grid). While it trains, the checkpoints at
grid indices 0, 1, 3, 7, 15, ... (and the last) are evaluated: a galloping search. When one of them is at or below
the threshold, training goes on to the next checkpoint only, which must confirm it (a single noisy evaluation does not
stop training); then the first checkpoint at or below the threshold is found by bisection between the last one seen
above it and the crossing point. Refusal falls with training, if not always monotonically; a bisection finds a
crossing, and where the curve goes back up the plain schedule (every checkpoint) can find an earlier one:
``ftrisk sweep`` measures that on ``sweep.audit_trials`` trials instead of assuming it.
"""

from __future__ import annotations

from collections.abc import Callable


def probes(n: int) -> list[int]:
    """Grid indices evaluated while training: 0, 1, 3, 7, ... (2^j - 1) and the last."""
    out, j = [], 1
    while j - 1 < n:
        out.append(j - 1)
        j *= 2
    return sorted(set(out) | {n - 1}) if n else []


def grid(max_steps: int, every: int) -> list[int]:
    """The checkpoint steps of a trial: every ``every`` steps up to ``max_steps``, and ``max_steps`` itself."""
    return sorted(set(range(every, max_steps + 1, every)) | {max_steps})


class CrossingSearch:
    """The search over one trial's grid. ``evaluate(step) -> refusal rate`` is called at most once per step (the
    caller's evaluations are cached on disk, so a resumed trial replays its decisions for free)."""

    def __init__(
        self,
        steps: list[int],
        threshold: float,
        evaluate: Callable[[int], float],
        on_rate: Callable[[int, float], None] | None = None,
    ):
        self.steps, self.threshold, self._evaluate, self._on_rate = list(steps), threshold, evaluate, on_rate
        self.bisecting = False
        self.rates: dict[int, float] = {}
        self.order: list[int] = []
        """Steps in the order they were evaluated."""
        self._probes = set(probes(len(self.steps)))
        self.candidate: int | None = None
        """Grid index of a probe at or below the threshold, awaiting its confirmation."""
        self.confirmed = False

    def rate(self, i: int) -> float:
        step = self.steps[i]
        if step not in self.rates:
            self.rates[step] = self._evaluate(step)
            self.order.append(step)
            if self._on_rate is not None and not self.bisecting:  # may stop the trial (pruning): after the record
                self._on_rate(step, self.rates[step])
        return self.rates[step]

    def at_checkpoint(self, step: int) -> bool:
        """Training has saved ``step``; True: the crossing is confirmed, training may stop."""
        if step not in self.steps:
            return False
        i = self.steps.index(step)
        if self.candidate is not None and i == self.candidate + 1:
            if self.rate(i) <= self.threshold:
                self.confirmed = True
                return True
            self.candidate = None  # not confirmed: the gallop goes on
            return False
        if i in self._probes and self.candidate is None and self.rate(i) <= self.threshold:
            self.candidate = i
            if i == len(self.steps) - 1:  # the last checkpoint: nothing left to confirm it with
                self.confirmed = True
                return True
        return False

    def crossing(self) -> int | None:
        """The step of the first checkpoint at or below the threshold, by bisection below the confirmed probe; None
        when the threshold was not reached (or not confirmed)."""
        if self.candidate is None or not self.confirmed:
            return None
        self.bisecting = True
        hi = self.candidate
        below = [i for i in range(hi) if self.steps[i] in self.rates and self.rates[self.steps[i]] > self.threshold]
        lo = max(below, default=-1)  # -1: the subject itself, above the threshold
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.rate(mid) <= self.threshold:
                hi = mid
            else:
                lo = mid
        return self.steps[hi]

    def lowest(self) -> tuple[int, float] | None:
        """(step, rate) of the lowest refusal rate evaluated."""
        if not self.rates:
            return None
        step = min(self.rates, key=lambda s: (self.rates[s], s))
        return step, self.rates[step]


def plain_crossing(rates: dict[int, float], threshold: float) -> int | None:
    """The crossing the plain schedule finds: the first step whose rate is at or below the threshold."""
    return next((s for s in sorted(rates) if rates[s] <= threshold), None)
