"""Reading answer files and ground truth, matching answers to questions, shared metric helpers.

Answer files are LLaVA's JSON Lines answer format (what `llava.eval.model_vqa*` write): one object per
line with at least "question_id" and "text" (the model's answer); "prompt" (the question as asked) is
used where LLaVA's own scripts use it (TextVQA, MME). Question ids are compared as strings, so an id
written as 5 in one file and "5" in another still match.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..files import read_jsonl

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Answer:
    """One line of an answer file; `source` is "<file>, line <n>" for error messages."""

    question_id: str
    text: str
    prompt: str
    source: str


def require_file(path: Path) -> Path:
    """`path` if it exists, else FileNotFoundError naming it."""
    if not path.exists():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    return path


def first_existing(*paths: Path) -> Path:
    """The first of `paths` that exists, else FileNotFoundError naming all of them."""
    for path in paths:
        if path.exists():
            return path
    raise FileNotFoundError(f"ground-truth file not found; looked for: {', '.join(map(str, paths))}")


def read_answers(answers_file: Path) -> list[Answer]:
    """The answers in a LLaVA answer file (FileNotFoundError if missing, ValueError if malformed or empty)."""
    answers_file = Path(answers_file)
    if not answers_file.exists():
        raise FileNotFoundError(f"answer file not found: {answers_file}")
    answers = []
    for line_number, row in read_jsonl(answers_file):
        source = f"{answers_file}, line {line_number}"
        if not isinstance(row, dict) or "question_id" not in row or not isinstance(row.get("text"), str):
            raise ValueError(f"{source}: an answer needs a 'question_id' and a string 'text'")
        answers.append(Answer(str(row["question_id"]), row["text"], str(row.get("prompt") or ""), source))
    if not answers:
        raise ValueError(f"{answers_file}: no answers")
    return answers


def match_answers(
    answers: Iterable[Answer],
    known: Mapping[K, Any],
    ground_truth: Path,
    key: Callable[[Answer], K] = lambda answer: answer.question_id,
) -> dict[K, Answer]:
    """Answers by `key`; a key missing from `known` or answered twice → ValueError naming it."""
    matched: dict[K, Answer] = {}
    for answer in answers:
        answer_key = key(answer)
        if answer_key not in known:
            raise ValueError(f"{answer.source}: question {answer_key!r} is not in the ground truth {ground_truth}")
        if answer_key in matched:
            raise ValueError(f"{answer.source}: question {answer_key!r} is answered twice (also {matched[answer_key].source})")
        matched[answer_key] = answer
    return matched


def percent(numerator: float, denominator: int) -> float | None:
    """100·numerator/denominator, or None when nothing was counted."""
    return 100.0 * numerator / denominator if denominator else None


def new_output_file(output: Path) -> Path:
    """`output`, with its folder created; FileExistsError if it exists (submissions never overwrite)."""
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists; not overwriting it")
    output.parent.mkdir(parents=True, exist_ok=True)
    return output


def write_new_json(output: Path, content: Any) -> Path:
    """Write `content` as JSON to `output`, which must not exist yet."""
    with new_output_file(output).open("x", encoding="utf-8") as handle:
        json.dump(content, handle)
    return output
