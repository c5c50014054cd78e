"""95% bootstrap intervals of a run's headline number, from its per-question outcomes.

The questions are resampled with replacement (1 000 times, seeded) and the headline recomputed with
the scorer's own arithmetic; the interval is the 2.5th–97.5th percentile of those values. Yes/no
benchmarks in POPE's format resample within each split (their headline is a mean over splits);
GQA-format benchmarks resample all questions. The interval says how much the number moves with the
sample of questions, not with the model or the seed.
"""

from __future__ import annotations

import random
from pathlib import Path

from .benchmarks import get_benchmark
from .scoring import gqa, pope

RESAMPLES = 1000
LEVEL = 0.95


def headline_interval(benchmark: str, answers: str | Path, data_root: str | Path, resamples: int = RESAMPLES,
                      seed: int = 0, allow_partial: bool = False) -> tuple[float, float] | None:
    """(low, high) of the headline's 95% bootstrap interval; None for benchmarks whose scorer has no
    per-question outcomes here (everything but the POPE and GQA formats)."""
    record = get_benchmark(benchmark)
    rng = random.Random(seed)
    if record.scorer in ("pope", "easyvqa_yesno"):
        _, by_split = pope.question_outcomes(record, Path(answers), Path(data_root), allow_partial)
        values = [pope.f1_mean({split: rng.choices(pairs, k=len(pairs)) for split, pairs in by_split.items()})
                  for _ in range(resamples)]
    elif record.scorer in ("gqa", "easyvqa"):
        _, outcomes = gqa.question_outcomes(record, Path(answers), Path(data_root), allow_partial)
        correct = [right for _, right in outcomes]
        values = [100 * sum(rng.choices(correct, k=len(correct))) / len(correct) for _ in range(resamples)]
    else:
        return None
    values.sort()
    tail = (1 - LEVEL) / 2
    return values[int(tail * resamples)], values[min(resamples - 1, int((1 - tail) * resamples))]
