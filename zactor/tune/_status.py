"""The trials' status while a Tuner runs: a table every few seconds on a terminal (as Ray
Tune prints), one plain line per change of a trial's state otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter


class Reporter:
    def __init__(self, metric: str | None, verbose: int | None) -> None:
        self.metric = metric
        self.verbose = 1 if verbose is None else verbose
        self.tty = sys.stdout.isatty()
        self.interval = 5.0 if self.tty else 1.0
        self.last = time.monotonic()

    def changed(self, trial) -> None:
        if self.verbose and not self.tty and trial.status != "RUNNING":
            value = (trial.last_result or {}).get(self.metric) if self.metric else None
            shown = f" {self.metric}={value:.6g}" if isinstance(value, (int, float)) else ""
            error = f" error={trial.error_text.splitlines()[0]}" if trial.error_text else ""
            print(f"Trial {trial.trial_id} {trial.status}: iter={trial.iteration}{shown} "
                  f"config={_short(trial.config)}{error}", flush=True)

    def maybe_print(self, trials: list) -> None:
        if not self.verbose or not self.tty or time.monotonic() - self.last < self.interval:
            return
        self.last = time.monotonic()
        print(self.table(trials), flush=True)

    def final(self, trials: list) -> None:
        if self.verbose:
            print(self.table(trials), flush=True)

    def table(self, trials: list) -> str:
        counts = Counter(t.status for t in trials)
        head = "Trial status: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        keys = sorted({k for t in trials for k in t.config if not isinstance(t.config[k],
                                                                             dict)})[:6]
        cols = ["Trial name", "status", *keys, "iter"] + ([self.metric] if self.metric else [])
        rows = []
        for t in trials:
            last = t.last_result or {}
            row = [t.trial_id, t.status, *[_cell(t.config.get(k)) for k in keys],
                   str(t.iteration)]
            if self.metric:
                row.append(_cell(last.get(self.metric)))
            rows.append(row)
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, c in enumerate(cols)]
        line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        out = [head, line, "| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths,
                                                                      strict=True)) + " |",
               line]
        out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
                for r in rows]
        out.append(line)
        return "\n".join(out)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return "" if value is None else str(value)


def _short(config: dict) -> str:
    text = str(config)
    return text if len(text) <= 120 else text[:117] + "..."
