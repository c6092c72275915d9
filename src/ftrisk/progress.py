"""The one-line progress of a whole ``ftrisk run``: which stage of how many, elapsed, and what remains.

Separate from the per-loop bars (generation, judging, training), which sit below it and vanish when
done. The remaining time is an estimate from the stages finished so far: the mean time of finished
stages of the same kind (evaluation, hardening, attack), else of all finished stages.
"""

from __future__ import annotations

import time


class Progress:
    def __init__(self, total: int):
        self.total, self.n, self.t0 = total, 0, time.perf_counter()
        self.durations: dict[str, list[float]] = {}
        self.kinds: list[str] = []
        self.current: tuple[str, float] | None = None
        self._bar = None  # drawn at the first stage, so lines printed before it (the plan) stay on their own

    @property
    def bar(self):
        if self._bar is None:
            from tqdm.auto import tqdm

            # the text is the bar's description: tqdm prefixes a postfix with ", "
            self._bar = tqdm(total=self.total, position=0, leave=True, desc="ftrisk run", bar_format="{desc}",
                             dynamic_ncols=True)
        return self._bar

    @staticmethod
    def kind(what: str) -> str:
        return what.split()[0]

    def begin(self, what: str) -> None:
        self._finish_current()
        self.n += 1
        self.current = (self.kind(what), time.perf_counter())
        self.kinds.append(self.kind(what))
        self._show(f"stage {min(self.n, self.total)}/{self.total} {what}")

    def _finish_current(self) -> None:
        if self.current is not None:
            kind, t = self.current
            self.durations.setdefault(kind, []).append(time.perf_counter() - t)
            self.current = None

    def remaining(self) -> float | None:
        done = [d for ds in self.durations.values() for d in ds]
        if not done:
            return None
        left = self.total - len(self.kinds)
        mean = sum(done) / len(done)
        known = {k: sum(v) / len(v) for k, v in self.durations.items()}
        # the stage in progress counts as half done; stages not yet begun are mostly evaluations
        cur = known.get(self.current[0], mean) / 2 if self.current else 0.0
        return cur + left * known.get("evaluate", mean)

    def _show(self, text: str) -> None:
        elapsed = time.perf_counter() - self.t0
        rem = self.remaining()
        est = f", ~{rem / 60:.1f} min left (estimate)" if rem is not None else ""
        self.bar.set_description_str(f"ftrisk run: {text} · {elapsed / 60:.1f} min elapsed{est}", refresh=True)

    def done(self) -> None:
        self._finish_current()
        self.bar.set_description_str(f"ftrisk run: {len(self.kinds)} stages in "
                                     f"{(time.perf_counter() - self.t0) / 60:.1f} min", refresh=True)
        self.bar.close()
