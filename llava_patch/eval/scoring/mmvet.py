"""MM-Vet: the predictions file for MM-Vet's GPT-4 grader, as LLaVA's `scripts/convert_mmvet_for_eval.py`.

Reads `<data_root>/mm-vet/llava-mm-vet.jsonl` (LLaVA's question file; question ids 0…217) and writes
a JSON object mapping MM-Vet's sample ids "v1_<question_id>" to the raw answers. The grader looks up
every sample, so every question must be answered: missing ones raise ValueError, `allow_partial` or not.
"""

from __future__ import annotations

from pathlib import Path

from ..benchmarks import get_benchmark
from ..files import read_jsonl
from .common import match_answers, read_answers, write_new_json
from .registry import submission_writer


@submission_writer("mmvet")
def write_submission(answers_file: Path, data_root: Path, output: Path, allow_partial: bool = False) -> Path:
    """{"v1_<question_id>": answer} for all MM-Vet questions."""
    del allow_partial  # not applicable: every answer is needed (see the module docstring)
    question_file = get_benchmark("mmvet").question_path(data_root)
    question_ids = [str(question["question_id"]) for _, question in read_jsonl(question_file)]
    answers = match_answers(read_answers(answers_file), dict.fromkeys(question_ids), question_file)
    missing = [question_id for question_id in question_ids if question_id not in answers]
    if missing:
        raise ValueError(f"{answers_file} leaves {len(missing)} MM-Vet questions unanswered (first: {missing[:5]})")
    return write_new_json(output, {f"v1_{question_id}": answers[question_id].text for question_id in question_ids})
