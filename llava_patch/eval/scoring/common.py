"""Reading answer files and ground truth, matching answers to questions, shared metric helpers.

Answer files are LLaVA's JSON Lines answer format (what `llava.eval.model_vqa*` write): one object per
line with at least "question_id" and "text" (the model's answer); "prompt" (the question as asked) is
used where LLaVA's own scripts use it (TextVQA, MME). Question ids are compared as strings, so an id
written as 5 in one file and "5" in another still match.

Completeness. `answer_sheet` matches an answer file to the questions a benchmark asks and refuses one
that leaves some of them unanswered (`missing_answers`: one-line ValueError naming the answer file,
the count and the first few questions) unless `allow_partial` is set; the scorers then score every
question, an unanswered one as wrong, and report "n_answered", "n_missing" and "n_questions"
(`AnswerSheet.counts`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..files import read_jsonl

K = TypeVar("K", bound=Hashable)

MAX_NAMED_MISSING = 5  # questions an incomplete-answers error names
SCORE_AS_WRONG = "score them as wrong"
UPLOAD_BLANK = "upload them blank (the server scores them as wrong)"


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


def missing_answers(
    answers_file: Path, missing: Sequence[Hashable], n_questions: int, allow_partial: bool, remedy: str = SCORE_AS_WRONG
) -> None:
    """ValueError (one line) when `missing` (unanswered questions, in ground-truth order) is not empty and
    `allow_partial` is False: "<file>: 9 of 18 questions have no answer (first: 'q10', ...); pass ..."."""
    if not missing or allow_partial:
        return
    named = ", ".join(repr(key) for key in missing[:MAX_NAMED_MISSING])
    if len(missing) > MAX_NAMED_MISSING:
        named += ", ..."
    raise ValueError(
        f"{answers_file}: {len(missing)} of {n_questions} questions have no answer (first: {named}); "
        f"pass allow_partial=True (--allow-partial) to {remedy}"
    )


@dataclass(frozen=True)
class AnswerSheet(Generic[K]):
    """An answer file matched to a benchmark's questions.

    `answers` by key (may include answers to known questions that are not required, e.g. GQA's
    unbalanced ones); `questions`: the keys that must be answered, in ground-truth order; `missing`:
    those without an answer (empty unless `allow_partial` was passed).
    """

    answers: dict[K, Answer]
    questions: tuple[K, ...]
    missing: tuple[K, ...]

    def get(self, question: K) -> Answer | None:
        return self.answers.get(question)

    def counts(self) -> dict[str, int]:
        """The counts "n_answered", "n_missing" and "n_questions" over the required questions."""
        return {
            "n_answered": len(self.questions) - len(self.missing),
            "n_missing": len(self.missing),
            "n_questions": len(self.questions),
        }


def answer_sheet(
    answers_file: Path,
    known: Mapping[K, Any],
    ground_truth: Path,
    allow_partial: bool,
    key: Callable[[Answer], K] = lambda answer: answer.question_id,
    questions: Iterable[K] | None = None,
    answers: Iterable[Answer] | None = None,
    remedy: str = SCORE_AS_WRONG,
) -> AnswerSheet[K]:
    """Read `answers_file` (or take `answers`, read from it), match it (`match_answers`) and check that
    every one of `questions` (default: every key of `known`) is answered (`missing_answers`)."""
    matched = match_answers(read_answers(answers_file) if answers is None else answers, known, ground_truth, key)
    required = tuple(known if questions is None else questions)
    missing = tuple(question for question in required if question not in matched)
    missing_answers(answers_file, missing, len(required), allow_partial, remedy)
    return AnswerSheet(matched, required, missing)


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
