"""POPE (COCO val2014; adversarial / popular / random): yes/no metrics per split, as LLaVA's
`llava/eval/eval_pope.py`, plus the mean F1 of the splits that the papers' tables report.

The same scoring serves every yes/no benchmark in POPE's layout (`score_benchmark`): its record gives
the files and the split names (`Benchmark.splits`); "easyvqa_yesno" (`llava_patch.eval.easyvqa`) is
registered here too. The files below are POPE's.

Reads `<data_root>/pope/llava_pope_test.jsonl` (LLaVA's question file: "question_id", "image", "text",
"category" = split name) and, per split, `<data_root>/pope/coco/coco_pope_<split>.json` (POPE's
labels, JSON Lines: "question_id", "image", "text", "label" = "yes"/"no"; the POPE commit LLaVA used
has 3000 / 3000 / 2910 lines).

The label files number their questions per split, so, like `eval_pope.py`, the n-th question of a
split in LLaVA's file is paired with the n-th line of that split's label file (a pair whose images
differ raises ValueError). Answers are then matched by LLaVA's question id, so their order does not
matter (`eval_pope.py` relies on it).

Answer parsing (`eval_pope.py`): keep the text before the first ".", delete commas, split on spaces;
"no" if any word is exactly "No", "not" or "no", otherwise "yes" ("Yes, there is a dog." → yes,
"There is not a dog." → no, "Nope" → yes). Metrics in percent with "yes" as the positive class; a
precision or recall with nothing to count (where `eval_pope.py` divides by zero) is reported as 0.

Every question must be answered unless `allow_partial`; then an unanswered question is wrong without
being an answer: a "yes" question counts as a false negative, a "no" question in no cell, and
accuracy and yes-ratio are over all the split's questions ("n_missing" per split says how many).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from ..benchmarks import Benchmark, get_benchmark
from ..files import read_jsonl
from .common import AnswerSheet, answer_sheet, percent
from .registry import scorer

_NO_WORDS = frozenset({"No", "not", "no"})


def parse_yes_no(text: str) -> str:
    """A free-form answer read as "yes" or "no", by `eval_pope.py`'s first-sentence rule."""
    first_sentence = text.split(".")[0]
    words = first_sentence.replace(",", "").split(" ")
    return "no" if _NO_WORDS.intersection(words) else "yes"


def _labels(benchmark: Benchmark, data_root: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """LLaVA's question file and question id → (split, label)."""
    question_file = benchmark.question_path(data_root)
    questions_by_split = defaultdict(list)
    for line_number, question in read_jsonl(question_file):
        questions_by_split[question["category"]].append((line_number, question))
    unknown = sorted(set(questions_by_split) - set(benchmark.splits))
    if unknown:
        raise ValueError(f"{question_file}: unknown {benchmark.display} split(s) {unknown}; "
                         f"expected {list(benchmark.splits)}")
    labels = {}
    for split, questions in questions_by_split.items():
        label_file = benchmark.file(data_root, "labels", split=split)
        label_rows = read_jsonl(label_file)
        if len(label_rows) != len(questions):
            raise ValueError(
                f"{question_file} has {len(questions)} {split} questions but {label_file} has {len(label_rows)} labels"
            )
        for (line_number, question), (label_line, label) in zip(questions, label_rows, strict=True):
            if question["image"] != label["image"]:
                raise ValueError(
                    f"{question_file}, line {line_number} ({question['image']}) does not pair with "
                    f"{label_file}, line {label_line} ({label['image']})"
                )
            labels[line_number, str(question["question_id"])] = (split, "no" if label["label"] == "no" else "yes")
    return question_file, {question_id: label for (_, question_id), label in sorted(labels.items())}  # file order


def split_metrics(predictions: Sequence[str | None], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 and yes-ratio (percent) of yes/no predictions, "yes" positive;
    a None prediction (unanswered) is wrong: a false negative on a "yes" question, in no cell on a "no" one."""
    pairs = list(zip(predictions, labels, strict=True))
    predictions = list(predictions)
    tp = pairs.count(("yes", "yes"))
    fp = pairs.count(("yes", "no"))
    tn = pairs.count(("no", "no"))
    fn = pairs.count(("no", "yes")) + pairs.count((None, "yes"))
    n_missing = predictions.count(None)
    precision = percent(tp, tp + fp) or 0.0
    recall = percent(tp, tp + fn) or 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": percent(tp + tn, len(pairs)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": percent(tp + fp, len(pairs)),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "n_answered": len(pairs) - n_missing,
        "n_missing": n_missing,
    }  # fmt: skip


def score_benchmark(benchmark: Benchmark, answers_file: Path, data_root: Path,
                    allow_partial: bool = False) -> dict[str, Any]:
    """Per-split metrics of a yes/no benchmark in POPE's layout and `f1_mean`, the mean F1 over the
    splits of its question file (in the order of `benchmark.splits`)."""
    sheet, outcomes = question_outcomes(benchmark, answers_file, data_root, allow_partial)
    per_split = {split: split_metrics(*zip(*pairs)) for split, pairs in outcomes.items()}
    headline = f1_mean(outcomes)
    return {"headline": headline, "f1_mean": headline, **per_split, **sheet.counts()}


def question_outcomes(benchmark: Benchmark, answers_file: Path, data_root: Path, allow_partial: bool = False
                      ) -> tuple[AnswerSheet, dict[str, list[tuple[str | None, str]]]]:
    """The answer sheet and, per split present (in the order of `benchmark.splits`), each question's
    (parsed prediction or None, label) in file order — what the metrics (and their bootstrap) count."""
    question_file, labels = _labels(benchmark, data_root)
    sheet = answer_sheet(answers_file, labels, question_file, allow_partial)
    outcomes = defaultdict(list)
    for question_id, (split, label) in labels.items():
        answer = sheet.get(question_id)
        outcomes[split].append((parse_yes_no(answer.text) if answer else None, label))
    return sheet, {split: outcomes[split] for split in benchmark.splits if outcomes[split]}


def f1_mean(outcomes: dict[str, list[tuple[str | None, str]]]) -> float:
    """The mean over splits of the F1 of (prediction, label) pairs: the headline."""
    return sum(split_metrics(*zip(*pairs))["f1"] for pairs in outcomes.values()) / len(outcomes)


@scorer("pope")
def score(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """POPE's per-split metrics and `f1_mean`."""
    return score_benchmark(get_benchmark("pope"), answers_file, data_root, allow_partial)


@scorer("easyvqa_yesno")
def score_easyvqa_yesno(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """easy-VQA's yes/no questions (`llava_patch.eval.easyvqa`), scored as POPE: metrics per question kind."""
    return score_benchmark(get_benchmark("easyvqa_yesno"), answers_file, data_root, allow_partial)
