"""TextVQA val: VQA accuracy with m4c's answer normalisation, as LLaVA's `llava/eval/eval_textvqa.py`.

Reads `<data_root>/textvqa/TextVQA_0.5.1_val.json` ({"data": [{"question_id", "image_id", "question",
"answers": [10 human answers]}, ...]}).

LLaVA's question file (`llava_textvqa_val_v051_ocr.jsonl`) carries the TextVQA *image* id as
"question_id", so, like `eval_textvqa.py`, an answer is matched on (image id, lower-cased question),
the question being the first line of the answer's "prompt" that is not the OCR-token hint
("Reference OCR token: ..."), the answer-format suffix or an "<image>" line. An answer whose
"question_id" is a TextVQA question id is matched on that instead. The val set repeats a few
(image, question) pairs, which LLaVA asks once each: as in LLaVA, every answer to such a pair is scored
against its annotation, and the pair counts as answered as many times as it is asked (answering it more
often is a ValueError). Every question must be answered unless `allow_partial` (then an unanswered one
scores 0 and the accuracy is over all questions); the error names TextVQA question ids.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..benchmarks import get_benchmark
from ..files import read_json
from .common import Answer, missing_answers, percent, read_answers
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


PairKey = tuple[str, str]  # (image id, lower-cased question)


def _pair_of(item: dict[str, Any]) -> PairKey:
    return str(item["image_id"]), item["question"].strip().lower()


@scorer("textvqa")
def score(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """TextVQA accuracy (percent): mean VQA accuracy over the questions (m4c's TextVQAAccuracyEvaluator)."""
    annotation_file = get_benchmark("textvqa").file(data_root, "annotations")
    annotations = read_json(annotation_file)["data"]
    pairs: dict[PairKey, list[dict[str, Any]]] = defaultdict(list)  # the annotations asking each pair
    for item in annotations:
        pairs[_pair_of(item)].append(item)
    by_question_id = {str(item["question_id"]): item for item in annotations}

    def annotation_of(answer: Answer) -> tuple[PairKey, dict[str, Any]]:
        key = (answer.question_id, question_in_prompt(answer.prompt))
        if key in pairs:
            return key, pairs[key][-1]  # a repeated pair: the last annotation, as LLaVA's lookup dict has it
        if answer.question_id in by_question_id:
            item = by_question_id[answer.question_id]
            return _pair_of(item), item
        raise ValueError(
            f"{answer.source}: question {key!r} (image id, question from the prompt) is not in the ground truth {annotation_file}"
        )

    answers_per_pair: dict[PairKey, list[tuple[Answer, dict[str, Any]]]] = defaultdict(list)
    for answer in read_answers(answers_file):
        key, item = annotation_of(answer)
        answers_per_pair[key].append((answer, item))
        if len(answers_per_pair[key]) > len(pairs[key]):
            raise ValueError(
                f"{answer.source}: question {key!r} is answered {len(answers_per_pair[key])} times but asked "
                f"{len(pairs[key])} time{'s' if len(pairs[key]) > 1 else ''} in {annotation_file}"
            )
    missing = [
        str(item["question_id"]) for key, items in pairs.items() for item in items[len(answers_per_pair[key]) :]
    ]
    missing_answers(answers_file, missing, len(annotations), allow_partial)
    total = sum(vqa_accuracy(answer.text, item["answers"]) for scored in answers_per_pair.values() for answer, item in scored)
    accuracy = percent(total, len(annotations))
    n_missing = len(missing)
    return {
        "headline": accuracy,
        "accuracy": accuracy,
        "n_answered": len(annotations) - n_missing,
        "n_missing": n_missing,
        "n_questions": len(annotations),
    }

