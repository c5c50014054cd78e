"""ScienceQA test (SQA-IMG): option-letter accuracy on the questions with an image, and overall, as
LLaVA's `llava/eval/eval_science_qa.py` reports them ("IMG-Accuracy" and "Accuracy").

Reads `<data_root>/scienceqa/problems.json` (problem id → {"choices", "answer" (index), "image"
(file name or null), ...}) and `<data_root>/scienceqa/pid_splits.json` ({"test": [problem ids], ...}).
Answers are keyed by problem id (LLaVA's `llava_test_CQM-A.json` uses those). Like the reference,
which iterates over the test split, answers to problems of the other splits are ignored (counted in
"n_ignored_other_split"); an id in no split, or not in problems.json, is a ValueError naming it. Every
test problem must be answered unless `allow_partial`, which scores unanswered ones as wrong (the
reference scores them as "FAILED", then guesses an option at random).

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
from .common import answer_sheet, percent, read_answers
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
def score(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """SQA accuracy (percent) on the test questions with an image (headline) and on all test questions."""
    benchmark = get_benchmark("sqa")
    problems_file, splits_file = benchmark.file(data_root, "problems"), benchmark.file(data_root, "splits")
    problems = read_json(problems_file)
    splits = read_json(splits_file)
    test_ids = splits["test"]
    test_problems = {problem_id: problems[problem_id] for problem_id in test_ids}
    other_splits = {problem_id for split, ids in splits.items() if split != "test" for problem_id in ids} - set(test_ids)
    answers, n_ignored = [], 0
    for answer in read_answers(answers_file):
        if answer.question_id in test_problems:
            answers.append(answer)
        elif answer.question_id not in problems:
            raise ValueError(f"{answer.source}: question {answer.question_id!r} is not in the ground truth {problems_file}")
        elif answer.question_id in other_splits:
            n_ignored += 1
        else:
            raise ValueError(f"{answer.source}: question {answer.question_id!r} is in no split of {splits_file}")
    sheet = answer_sheet(answers_file, test_problems, problems_file, allow_partial, answers=answers)
    correct = {"image": 0, "all": 0}
    counted = {"image": 0, "all": 0}
    answered_with_image = 0
    for problem_id, problem in test_problems.items():
        answer = sheet.get(problem_id)
        right = answer is not None and parse_letter(answer.text) == string.ascii_uppercase[problem["answer"]]
        for subset in ("image", "all") if problem.get("image") else ("all",):
            counted[subset] += 1
            correct[subset] += right
        answered_with_image += answer is not None and bool(problem.get("image"))
    image_accuracy = percent(correct["image"], counted["image"])
    return {
        "headline": image_accuracy,
        "image_accuracy": image_accuracy,
        "accuracy": percent(correct["all"], counted["all"]),
        "n_image_answered": answered_with_image,
        **sheet.counts(),
        "n_image_questions": counted["image"],
        "n_ignored_other_split": n_ignored,
    }
