"""ScienceQA test (SQA-IMG): option-letter accuracy on the questions with an image, and overall, as
LLaVA's `llava/eval/eval_science_qa.py` reports them ("IMG-Accuracy" and "Accuracy").

Reads `<data_root>/scienceqa/problems.json` (problem id → {"choices", "answer" (index), "image"
(file name or null), ...}) and `<data_root>/scienceqa/pid_splits.json` ({"test": [problem ids], ...}).
Answers are keyed by problem id (LLaVA's `llava_test_CQM-A.json` uses those).

Letter parsing follows `eval_science_qa.py`: the whole answer is a letter ("B"), or it starts with a
letter and ". " ("B. The sun"), or it contains exactly one "The answer is B". Deliberate
differences: "B." alone is read as B (the reference fails it), and the letter after "The answer is"
must stand alone but may end the text (the reference's regex reads "The answer is An…" as A and needs
a character after the letter). A letter beyond the question's choices, or no letter, is wrong. A question counts as an image question when problems.json gives it an image
(the reference looks for "<image>" in the logged prompt; both pick the same 2017 test questions).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from ..benchmarks import get_benchmark
from ..files import read_json
from .common import match_answers, percent, read_answers
from .registry import scorer

_LETTERS = "ABCDE"
_THE_ANSWER_IS = re.compile(r"The answer is ([A-Z])(?![A-Za-z])")


def parse_letter(text: str) -> str | None:
    """The option letter an SQA answer gives, or None."""
    text = text.strip()
    bare = text.rstrip(".")
    if len(bare) == 1 and bare in _LETTERS:
        return bare
    if len(text) >= 3 and text[0] in _LETTERS and text[1:3] == ". ":
        return text[0]
    found = _THE_ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else None


@scorer("sqa_img")
def score(answers_file: Path, data_root: Path) -> dict[str, Any]:
    """SQA accuracy (percent) on the answered test questions with an image (headline) and on all."""
    benchmark = get_benchmark("sqa")
    problems_file = benchmark.file(data_root, "problems")
    problems = read_json(problems_file)
    test_ids = read_json(benchmark.file(data_root, "splits"))["test"]
    test_problems = {problem_id: problems[problem_id] for problem_id in test_ids}
    answers = match_answers(read_answers(answers_file), test_problems, problems_file)
    correct = {"image": 0, "all": 0}
    counted = {"image": 0, "all": 0}
    for problem_id, answer in answers.items():
        problem = test_problems[problem_id]
        right = parse_letter(answer.text) == string.ascii_uppercase[problem["answer"]]
        for subset in ("image", "all") if problem.get("image") else ("all",):
            counted[subset] += 1
            correct[subset] += right
    image_accuracy = percent(correct["image"], counted["image"])
    return {
        "headline": image_accuracy,
        "image_accuracy": image_accuracy,
        "accuracy": percent(correct["all"], counted["all"]),
        "n_image_answered": counted["image"],
        "n_answered": counted["all"],
        "n_image_questions": sum(1 for problem in test_problems.values() if problem.get("image")),
        "n_questions": len(test_problems),
    }
