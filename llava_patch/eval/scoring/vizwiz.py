"""VizWiz test: the submission for EvalAI, as LLaVA's `scripts/convert_vizwiz_for_submission.py`.

Reads `<data_root>/vizwiz/llava_test.jsonl` (LLaVA's question file: "question_id", "image", "text")
and writes a JSON list of {"image", "answer"} in that file's order, each answer passed through
EvalAI's normalisation. Every question must be answered (the reference asserts it; the server
needs all of them): missing ones raise ValueError, `allow_partial` or not.
"""

from __future__ import annotations

from pathlib import Path

from ..benchmarks import get_benchmark
from ..files import read_jsonl
from .common import match_answers, read_answers, write_new_json
from .registry import submission_writer
from .vqa_accuracy import normalize_answer


@submission_writer("vizwiz")
def write_submission(answers_file: Path, data_root: Path, output: Path, allow_partial: bool = False) -> Path:
    """EvalAI upload for VizWiz test: [{"image", "answer"}]."""
    del allow_partial  # not applicable: every answer is needed (see the module docstring)
    question_file = get_benchmark("vizwiz").question_path(data_root)
    questions = [question for _, question in read_jsonl(question_file)]
    answers = match_answers(read_answers(answers_file), {str(q["question_id"]): q for q in questions}, question_file)
    missing = [question["question_id"] for question in questions if str(question["question_id"]) not in answers]
    if missing:
        raise ValueError(f"{answers_file} leaves {len(missing)} VizWiz questions unanswered (first: {missing[:5]})")
    upload = [
        {"image": question["image"], "answer": normalize_answer(answers[str(question["question_id"])].text)}
        for question in questions
    ]
    return write_new_json(output, upload)
