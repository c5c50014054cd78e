"""Local benchmark scorers and submission writers for LLaVA-format answer files (docs/protocol.md).

    from llava_patch.eval.scoring import benchmarks, score, write_submission
    score("pope", Path("answers/pope.jsonl"), Path("playground/data/eval"))["f1_mean"]
    write_submission("vqav2", Path("answers/vqav2.jsonl"), Path("playground/data/eval"), Path("upload.json"))

`data_root` is LLaVA's `playground/data/eval` (its eval.zip plus the datasets, laid out as LLaVA's
docs/Evaluation.md says); each benchmark's record in `llava_patch.eval.benchmarks` names its files
below it, and its module documents them. Metrics are in
percent (MME: sums of percentages) and every result has a "headline" entry, the number the papers'
tables report, plus "n_answered" / "n_missing" / "n_questions".

Incomplete answer files. A question of the benchmark with no answer is a ValueError naming the answer
file, how many are missing and the first few (one line: "<answers>: 9 of 18 questions have no answer
(first: 'q10', 'q11', ...); pass allow_partial=True (--allow-partial) to score them as wrong"), unless
`allow_partial=True`: then the unanswered questions are scored as wrong, every metric (the headline
included) is over all the questions, as LLaVA's official scripts compute it where they iterate over
the questions, and "n_missing" says how many were unanswered. Answers to questions outside the ground
truth, or answered twice, are ValueErrors either way (SQA-IMG ignores, like LLaVA, answers to problems
of the other ScienceQA splits and counts them in "n_ignored_other_split").

Submission writers: VQAv2 (the test-dev questions; test-std ones are uploaded blank) and MMBench(-CN)
test refuse missing answers unless `allow_partial=True`, which uploads them blank (the server scores a
blank as wrong); VizWiz and MM-Vet refuse them always (the server / the grader needs every answer).

One module per benchmark, registered by name with `registry.scorer` / `registry.submission_writer`
and imported by name below, so adding a benchmark is its record (which names its scorer), its module
and its name in that import line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import gqa, mmbench, mme, mmvet, pope, seed, sqa, textvqa, vizwiz, vqav2  # noqa: F401  (they register)
from .registry import SCORERS, SUBMISSION_WRITERS


def benchmarks() -> list[str]:
    """Names of the benchmarks that can be scored locally."""
    return sorted(SCORERS)


def submission_benchmarks() -> list[str]:
    """Names of the benchmarks `write_submission` writes server uploads for."""
    return sorted(SUBMISSION_WRITERS)


def score(benchmark: str, answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """JSON-serialisable metrics of a LLaVA answer file against the ground truth under `data_root`.

    Unknown benchmark, malformed answer line, an answer to a question outside the ground truth or
    answered twice, or (unless `allow_partial`, which scores them as wrong) questions without an answer
    → ValueError; a missing ground-truth file → FileNotFoundError naming it.
    """
    if benchmark not in SCORERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; local scorers: {', '.join(benchmarks())}")
    return SCORERS[benchmark](Path(answers_file), Path(data_root), allow_partial=allow_partial)


def write_submission(
    benchmark: str, answers_file: Path, data_root: Path, output: Path, allow_partial: bool = False
) -> Path:
    """Write the evaluation server's upload for `benchmark` to `output` and return the path written.

    Never overwrites: an existing `output` → FileExistsError. Errors otherwise as for `score`;
    `allow_partial` uploads unanswered questions blank where the server accepts that (VQAv2, MMBench),
    and VizWiz and MM-Vet need every answer regardless.
    """
    if benchmark not in SUBMISSION_WRITERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; submission writers: {', '.join(submission_benchmarks())}")
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists; not overwriting it")
    return SUBMISSION_WRITERS[benchmark](Path(answers_file), Path(data_root), output, allow_partial=allow_partial)


__all__ = ["benchmarks", "submission_benchmarks", "score", "write_submission"]
