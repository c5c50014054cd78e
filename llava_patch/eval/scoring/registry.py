"""Name → function registries for local scorers and submission writers.

A benchmark's scorer is one module in `llava_patch/eval/scoring/` that decorates its functions with
`@scorer("name")` and/or `@submission_writer("name")`; `llava_patch.eval.scoring` imports every module of
the package, so adding a module (and naming its scorer in the benchmark's record) is the whole change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class Scorer(Protocol):
    """Metrics of an answer file; unanswered questions → ValueError unless `allow_partial` (then scored as wrong)."""

    def __call__(self, answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]: ...


class SubmissionWriter(Protocol):
    """Write the server's upload to `output` and return the path written; see each writer for `allow_partial`."""

    def __call__(self, answers_file: Path, data_root: Path, output: Path, allow_partial: bool = False) -> Path: ...


SCORERS: dict[str, Scorer] = {}
SUBMISSION_WRITERS: dict[str, SubmissionWriter] = {}


def _register(table: dict[str, Callable], kind: str, name: str) -> Callable[[Callable], Callable]:
    def decorate(function: Callable) -> Callable:
        if name in table:
            raise ValueError(f"{kind} {name!r} is registered twice ({table[name].__module__}, {function.__module__})")
        table[name] = function
        return function

    return decorate


def scorer(name: str) -> Callable[[Scorer], Scorer]:
    """Register `function(answers_file, data_root, allow_partial=False) -> metrics` as the local scorer of `name`."""
    return _register(SCORERS, "scorer", name)


def submission_writer(name: str) -> Callable[[SubmissionWriter], SubmissionWriter]:
    """Register `function(answers_file, data_root, output, allow_partial=False) -> written path` for `name`."""
    return _register(SUBMISSION_WRITERS, "submission writer", name)
