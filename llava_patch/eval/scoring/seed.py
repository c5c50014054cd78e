"""SEED-Bench (v1): multiple-choice accuracy on the image questions, as LLaVA's
`scripts/convert_seed_for_submission.py` prints it ("image accuracy").

Reads `<data_root>/seed_bench/SEED-Bench.json` ({"question_type": {name: id}, "questions":
[{"question_id", "answer" (a letter), "data_type" ("image"/"video"), "question_type_id", ...}]}).
Answers are keyed by SEED question id.

An answer is right when its text, stripped, is exactly the answer letter (the reference compares
the text as is: "A." or "The answer is A" is wrong in both). Video questions (answered on a middle
frame in LLaVA's setup) are scored separately and kept out of the headline.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..benchmarks import get_benchmark
from ..files import read_json
from .common import match_answers, percent, read_answers
from .registry import scorer


@scorer("seed")
def score(answers_file: Path, data_root: Path) -> dict[str, Any]:
    """SEED image accuracy (headline), video and overall accuracy, and accuracy per question type (percent)."""
    annotation_file = get_benchmark("seed").file(data_root, "annotations")
    annotation = read_json(annotation_file)
    questions = {str(question["question_id"]): question for question in annotation["questions"]}
    type_names = {type_id: name for name, type_id in annotation["question_type"].items()}
    answers = match_answers(read_answers(answers_file), questions, annotation_file)
    correct, counted = defaultdict(int), defaultdict(int)
    n_right = 0
    for question_id, answer in answers.items():
        question = questions[question_id]
        right = answer.text.strip() == question["answer"]
        n_right += right
        for group in (("data_type", question["data_type"]), ("question_type", type_names[question["question_type_id"]])):
            counted[group] += 1
            correct[group] += right
    image_accuracy = percent(correct["data_type", "image"], counted["data_type", "image"])
    return {
        "headline": image_accuracy,
        "image_accuracy": image_accuracy,
        "video_accuracy": percent(correct["data_type", "video"], counted["data_type", "video"]),
        "accuracy": percent(n_right, len(answers)),
        "per_question_type": {
            name: percent(correct[kind, name], counted[kind, name]) for kind, name in sorted(counted) if kind == "question_type"
        },
        "n_image_answered": counted["data_type", "image"],
        "n_answered": len(answers),
        "n_image_questions": sum(1 for question in questions.values() if question["data_type"] == "image"),
        "n_questions": len(questions),
    }
