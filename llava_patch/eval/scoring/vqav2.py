"""VQAv2: local val accuracy, and the test-dev submission for EvalAI.

- Scorer "vqav2_val" reads `<data_root>/vqav2/v2_mscoco_val2014_annotations.json` (the official VQA
  v2 val annotations: {"annotations": [{"question_id", "answer_type", "answers": [{"answer"}, ×10],
  ...}]}); answers are keyed by VQA question id. Accuracy is the standard VQA accuracy with EvalAI's
  normalisation of prediction and human answers (`vqa_accuracy`), overall and per answer type
  (yes/no, number, other). The official `vqaEval.py` skips normalising when all ten humans agree;
  this normalises always, as m4c does (the two differ only where the humans' shared answer is not
  already normalised). Every val question must be answered unless `allow_partial` (scoring a subset
  of val needs it; unanswered questions then score 0).
- Submission "vqav2" reads `<data_root>/vqav2/llava_vqav2_mscoco_test2015.jsonl` (LLaVA's question
  file for the whole test2015 set, which EvalAI's upload must cover) and writes, like LLaVA's
  `scripts/convert_vqav2_for_submission.py`, a JSON list of {"question_id", "answer"} in that file's
  order, the answer passed through EvalAI's normalisation and "" for questions not answered (the
  test-std part when test-dev was run). Every question of the test-dev file the run answers
  (`llava_vqav2_mscoco_test-dev2015.jsonl`, the benchmark's question file; where it is absent, every
  question of test2015) must be answered: EvalAI scores a blank answer as wrong, so a missing one is a
  ValueError unless `allow_partial`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..benchmarks import get_benchmark
from ..files import read_json, read_jsonl
from .common import UPLOAD_BLANK, answer_sheet, percent, write_new_json
from .registry import scorer, submission_writer
from .vqa_accuracy import normalize_answer, vqa_accuracy


@scorer("vqav2_val")
def score(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """VQAv2 val accuracy (percent), overall (headline) and per answer type."""
    annotation_file = get_benchmark("vqav2").file(data_root, "val_annotations")
    annotations = {str(item["question_id"]): item for item in read_json(annotation_file)["annotations"]}
    sheet = answer_sheet(answers_file, annotations, annotation_file, allow_partial)
    total = 0.0
    per_type_total, per_type_count = defaultdict(float), defaultdict(int)
    for question_id, annotation in annotations.items():
        answer = sheet.get(question_id)
        accuracy = vqa_accuracy(answer.text, [human["answer"] for human in annotation["answers"]]) if answer else 0.0
        total += accuracy
        per_type_total[annotation["answer_type"]] += accuracy
        per_type_count[annotation["answer_type"]] += 1
    overall = percent(total, len(annotations))
    return {
        "headline": overall,
        "accuracy": overall,
        "per_answer_type": {kind: percent(per_type_total[kind], per_type_count[kind]) for kind in sorted(per_type_count)},
        **sheet.counts(),
    }


@submission_writer("vqav2")
def write_submission(answers_file: Path, data_root: Path, output: Path, allow_partial: bool = False) -> Path:
    """EvalAI upload for VQAv2 test-dev/test-std: [{"question_id", "answer"}] over all of test2015."""
    benchmark = get_benchmark("vqav2")
    question_file = benchmark.file(data_root, "upload_questions")
    questions = [question for _, question in read_jsonl(question_file)]
    by_id = {str(question["question_id"]): question for question in questions}
    test_dev_file = benchmark.question_path(data_root)
    required = [str(question["question_id"]) for _, question in read_jsonl(test_dev_file)] if test_dev_file.exists() else None
    answers = answer_sheet(answers_file, by_id, question_file, allow_partial, questions=required, remedy=UPLOAD_BLANK).answers
    upload = []
    for question in questions:
        answer = answers.get(str(question["question_id"]))
        upload.append({"question_id": question["question_id"], "answer": normalize_answer(answer.text) if answer else ""})
    return write_new_json(output, upload)
