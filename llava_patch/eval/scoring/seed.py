"""SEED-Bench (v1): multiple-choice accuracy on the image questions, as LLaVA's
`scripts/convert_seed_for_submission.py` prints it ("image accuracy").

Reads `<data_root>/seed_bench/SEED-Bench.json` ({"question_type": {name: id}, "questions":
[{"question_id", "answer" (a letter), "data_type" ("image"/"video"), "question_type_id", ...}]}).
Answers are keyed by SEED question id.

An answer is right when its text, stripped, is exactly the answer letter (the reference compares
the text as is: "A." or "The answer is A" is wrong in both). Video questions (answered on a middle
frame in LLaVA's setup) are scored separately and kept out of the headline. Every question (image and
video) must be answered unless `allow_partial`, which scores unanswered ones as wrong, as the reference
does (it iterates over SEED-Bench.json's questions).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..benchmarks import get_benchmark
from ..files import read_json
from .common import answer_sheet, percent
from .registry import scorer


@scorer("seed")
def score(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """SEED image accuracy (headline), video and overall accuracy, and accuracy per question type (percent)."""
    annotation_file = get_benchmark("seed").file(data_root, "annotations")
    annotation = read_json(annotation_file)
    questions = {str(question["question_id"]): question for question in annotation["questions"]}
    type_names = {type_id: name for name, type_id in annotation["question_type"].items()}
    sheet = answer_sheet(answers_file, questions, annotation_file, allow_partial)
    correct, counted = defaultdict(int), defaultdict(int)
    n_right = 0
    n_image_answered = 0
    for question_id, question in questions.items():
        answer = sheet.get(question_id)
        right = answer is not None and answer.text.strip() == question["answer"]
        n_right += right
        n_image_answered += answer is not None and question["data_type"] == "image"
        for group in (("data_type", question["data_type"]), ("question_type", type_names[question["question_type_id"]])):
            counted[group] += 1
            correct[group] += right
    image_accuracy = percent(correct["data_type", "image"], counted["data_type", "image"])
    return {
        "headline": image_accuracy,
        "image_accuracy": image_accuracy,
        "video_accuracy": percent(correct["data_type", "video"], counted["data_type", "video"]),
        "accuracy": percent(n_right, len(questions)),
        "per_question_type": {
            name: percent(correct[kind, name], counted[kind, name]) for kind, name in sorted(counted) if kind == "question_type"
        },
        "n_image_answered": n_image_answered,
        **sheet.counts(),
        "n_image_questions": counted["data_type", "image"],
    }
