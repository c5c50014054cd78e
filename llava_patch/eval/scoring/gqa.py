"""GQA test-dev balanced: exact-match accuracy, as LLaVA's `scripts/v1_5/eval/gqa.sh` computes it.

Reads `<data_root>/gqa/data/testdev_balanced_questions.json` (GQA 1.2 questions: id → {"answer",
"isBalanced", "types": {"structural": ...}, ...}). Answers are keyed by GQA question id.

Mirrors `scripts/convert_gqa_for_eval.py` (prediction → `text.rstrip('.').lower()`) followed by the
official GQA `eval.py --tier testdev_balanced` accuracy: prediction == gold answer, over the balanced
questions, with no further normalisation ("a dog" ≠ "dog"). Like `eval.py` it also splits the
accuracy into binary questions (structural type verify/logical/choose/compare) and open ones (query).

`score_benchmark` scores any benchmark whose ground truth is in this format; "easyvqa"
(`llava_patch.eval.easyvqa`) is registered here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..benchmarks import Benchmark, get_benchmark
from ..files import read_json
from .common import AnswerSheet, answer_sheet, percent
from .registry import scorer


def normalize_prediction(text: str) -> str:
    """LLaVA's conversion for GQA's evaluator: trailing periods dropped, lower-cased."""
    return text.strip().rstrip(".").lower()


def score_benchmark(benchmark: Benchmark, answers_file: Path, data_root: Path,
                    allow_partial: bool = False) -> dict[str, Any]:
    """Accuracy (percent) over the balanced questions of a benchmark whose ground truth is in GQA's format
    (its record's "questions" file), also split binary / open.

    Every balanced question must be answered (as GQA's `eval.py` demands) unless `allow_partial`, which
    scores unanswered ones as wrong; answers to unbalanced questions are accepted and not counted.
    """
    sheet, outcomes = question_outcomes(benchmark, answers_file, data_root, allow_partial)
    correct = {kind: sum(right for other, right in outcomes if other == kind) for kind in ("binary", "open")}
    counted = {kind: sum(other == kind for other, _ in outcomes) for kind in ("binary", "open")}
    accuracy = percent(sum(correct.values()), sum(counted.values()))
    return {
        "headline": accuracy,
        "accuracy": accuracy,
        "binary_accuracy": percent(correct["binary"], counted["binary"]),
        "open_accuracy": percent(correct["open"], counted["open"]),
        **sheet.counts(),
    }


def question_outcomes(benchmark: Benchmark, answers_file: Path, data_root: Path, allow_partial: bool = False
                      ) -> tuple[AnswerSheet, list[tuple[str, bool]]]:
    """The answer sheet and each balanced question's (kind: "binary" or "open", answered correctly),
    in the ground truth's order — what the accuracy (and its bootstrap) counts."""
    questions_file = benchmark.file(data_root, "questions")
    questions = read_json(questions_file)
    balanced = [question_id for question_id, question in questions.items() if question["isBalanced"]]
    sheet = answer_sheet(answers_file, questions, questions_file, allow_partial, questions=balanced)
    outcomes = []
    for question_id in balanced:
        question, answer = questions[question_id], sheet.get(question_id)
        kind = "open" if question["types"]["structural"] == "query" else "binary"
        outcomes.append((kind, answer is not None and normalize_prediction(answer.text) == question["answer"]))
    return sheet, outcomes


@scorer("gqa")
def score(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """GQA test-dev balanced accuracy."""
    return score_benchmark(get_benchmark("gqa"), answers_file, data_root, allow_partial)


@scorer("easyvqa")
def score_easyvqa(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """easy-VQA's short-answer questions (`llava_patch.eval.easyvqa`), scored as GQA: exact match."""
    return score_benchmark(get_benchmark("easyvqa"), answers_file, data_root, allow_partial)
