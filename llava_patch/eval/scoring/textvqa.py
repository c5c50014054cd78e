"""TextVQA val: VQA accuracy with m4c's answer normalisation, as LLaVA's `llava/eval/eval_textvqa.py`.

Reads `<data_root>/textvqa/TextVQA_0.5.1_val.json` ({"data": [{"question_id", "image_id", "question",
"answers": [10 human answers]}, ...]}).

LLaVA's question file (`llava_textvqa_val_v051_ocr.jsonl`) carries the TextVQA *image* id as
"question_id", so, like `eval_textvqa.py`, an answer is matched on (image id, lower-cased question),
the question being the first line of the answer's "prompt" that is not the OCR-token hint
("Reference OCR token: ..."), the answer-format suffix or an "<image>" line. An answer whose
"question_id" is a TextVQA question id is matched on that instead. Several answers may land on one
annotation (the val set repeats a few image/question pairs); each is scored, as in LLaVA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..benchmarks import get_benchmark
from ..files import read_json
from .common import Answer, percent, read_answers
from .registry import scorer
from .vqa_accuracy import vqa_accuracy

_NOT_THE_QUESTION = ("Reference OCR token:", "Answer the question using a single word or phrase.", "<image>")


def question_in_prompt(prompt: str) -> str:
    """The question of a LLaVA TextVQA prompt, lower-cased, for matching the annotation."""
    for line in prompt.splitlines():
        line = line.strip()
        if line and not line.startswith(_NOT_THE_QUESTION):
            return line.lower()
    return ""


@scorer("textvqa")
def score(answers_file: Path, data_root: Path) -> dict[str, Any]:
    """TextVQA accuracy (percent): mean VQA accuracy of the answers (m4c's TextVQAAccuracyEvaluator)."""
    annotation_file = get_benchmark("textvqa").file(data_root, "annotations")
    annotations = read_json(annotation_file)["data"]
    by_image_and_question = {(str(item["image_id"]), item["question"].strip().lower()): item for item in annotations}
    by_question_id = {str(item["question_id"]): item for item in annotations}

    def annotation_of(answer: Answer) -> dict[str, Any]:
        key = (answer.question_id, question_in_prompt(answer.prompt))
        if key in by_image_and_question:
            return by_image_and_question[key]
        if answer.question_id in by_question_id:
            return by_question_id[answer.question_id]
        raise ValueError(
            f"{answer.source}: question {key!r} (image id, question from the prompt) is not in the ground truth {annotation_file}"
        )

    answers = read_answers(answers_file)
    total = sum(vqa_accuracy(answer.text, annotation_of(answer)["answers"]) for answer in answers)
    accuracy = percent(total, len(answers))
    return {"headline": accuracy, "accuracy": accuracy, "n_answered": len(answers), "n_questions": len(annotations)}
