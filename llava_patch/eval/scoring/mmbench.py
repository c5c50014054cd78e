"""MMBench and MMBench-CN: local dev-set accuracy, and the test-set submission table.

Files (the TSVs from OpenMMLab; columns index, question, hint, A–D, answer (dev only), category,
image (base64), source, l2-category, comment, split):

- "mmbench":    dev `<data_root>/mmbench/mmbench_dev_20230712.tsv`,
                test `<data_root>/mmbench/mmbench_test_20230712.tsv`.
- "mmbench_cn": dev `<data_root>/mmbench_cn/mmbench_dev_cn_20231003.tsv`,
                test `<data_root>/mmbench_cn/mmbench_test_cn_20231003.tsv`
                (LLaVA's scripts use `mmbench_cn/`, its docs `mmbench/`: both are looked in, in that order).

Answers are keyed by the TSV's "index" (what `llava/eval/model_vqa_mmbench.py` writes as question_id).

Scoring. The papers' numbers come from OpenCompass's evaluation server; this follows the heuristic
answer matching of its open toolkit (VLMEvalKit), leaving out the ChatGPT fallback it uses for answers
the heuristics cannot read (LLaVA answers with a bare letter). The answer's option letter is: the whole
answer, when it is one of the question's letters (trailing periods ignored); else the one letter of the
question that stands alone in the text (no Latin letter on either side: "The answer is B.", "答案是B"),
if exactly one does; else the one option whose text the answer contains (case-insensitive), if
exactly one does; else none (wrong). The question's letters are A–D up to the first empty one ("nan"
and "none" count as empty, as in `model_vqa_mmbench.py`).

Circular evaluation. MMBench repeats a question with its options rotated; the copies' indices differ
by multiples of 1,000,000. "accuracy" (the headline, what the server reports) counts a question right
only if every copy in the TSV is answered and right; "row_accuracy" scores each row on its own. A TSV
without such copies gives the same number for both. Every row must be answered unless `allow_partial`,
which scores unanswered rows (and so their questions) as wrong.

Submission (what `scripts/convert_mmbench_for_submission.py` makes): the test TSV without the hint,
category, source, image, comment and l2-category columns, with a "prediction" column (the raw answer)
inserted as the seventh column. Every row must be answered: OpenCompass scores a blank prediction as
wrong, so an incomplete answer file is a ValueError unless `allow_partial`, which leaves the
prediction empty as LLaVA's script does. Written as .xlsx when the output name ends in
.xlsx and openpyxl is installed, otherwise as TSV (an .xlsx name then becomes .tsv; the path written is
returned).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..benchmarks import get_benchmark
from .common import UPLOAD_BLANK, answer_sheet, first_existing, new_output_file, percent, require_file
from .registry import scorer, submission_writer

_OPTION_LETTERS = "ABCD"
_EMPTY_OPTION = frozenset({"", "nan", "none"})
_CIRCULAR_STRIDE = 1_000_000
_DROPPED_FOR_SUBMISSION = frozenset({"hint", "category", "source", "image", "comment", "l2-category"})
_PREDICTION_COLUMN_POSITION = 6
_STANDALONE_CAPITAL = re.compile(r"(?<![A-Za-z])[A-Z](?![A-Za-z])")
# Base64 images make fields far longer than the csv module's default limit (128 KiB).
_MAX_FIELD_SIZE = 2**31 - 1


def read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of an MMBench TSV, without the (large) image column."""
    previous_limit = csv.field_size_limit(_MAX_FIELD_SIZE)
    try:
        with require_file(path).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            rows = [{column: value for column, value in row.items() if column != "image"} for row in reader]
            return list(reader.fieldnames or []), rows
    finally:
        csv.field_size_limit(previous_limit)


def options_of(row: dict[str, str]) -> dict[str, str]:
    """Letter → option text, A–D up to the first empty option."""
    options = {}
    for letter in _OPTION_LETTERS:
        text = (row.get(letter) or "").strip()
        if text.lower() in _EMPTY_OPTION:
            break
        options[letter] = text
    return options


def parse_option(text: str, options: dict[str, str]) -> str | None:
    """The option letter an answer gives (rules in the module docstring), or None."""
    text = text.strip()
    if text.rstrip(".") in options:
        return text.rstrip(".")
    letters = set(_STANDALONE_CAPITAL.findall(text)) & options.keys()
    if len(letters) == 1:
        return letters.pop()
    quoted = [letter for letter, option in options.items() if option.lower() in text.lower()]
    return quoted[0] if len(quoted) == 1 else None


def _score(answers_file: Path, tsv: Path, allow_partial: bool) -> dict[str, Any]:
    header, rows = read_tsv(tsv)
    if "answer" not in header:
        raise ValueError(f"{tsv} has no 'answer' column (a test split?): submit it with write_submission instead")
    rows_by_index = {row["index"].strip(): row for row in rows}
    sheet = answer_sheet(answers_file, rows_by_index, tsv, allow_partial)
    results_per_question = defaultdict(list)
    for index, row in rows_by_index.items():
        answer = sheet.get(index)
        right = answer is not None and parse_option(answer.text, options_of(row)) == row["answer"].strip()
        results_per_question[int(index) % _CIRCULAR_STRIDE].append((answer is not None, right))
    n_right_rows = sum(right for results in results_per_question.values() for _, right in results)
    n_right_questions = sum(all(right for _, right in results) for results in results_per_question.values())
    accuracy = percent(n_right_questions, len(results_per_question))
    return {
        "headline": accuracy,
        "accuracy": accuracy,
        "row_accuracy": percent(n_right_rows, len(rows_by_index)),
        **sheet.counts(),
        "n_circular_answered": sum(any(answered for answered, _ in results) for results in results_per_question.values()),
        "n_circular_questions": len(results_per_question),
    }


def _write_submission(answers_file: Path, tsv: Path, output: Path, allow_partial: bool) -> Path:
    header, rows = read_tsv(tsv)
    rows_by_index = {row["index"].strip(): row for row in rows}
    answers = answer_sheet(answers_file, rows_by_index, tsv, allow_partial, remedy=UPLOAD_BLANK).answers
    output = new_output_file(output)
    columns = [column for column in header if column not in _DROPPED_FOR_SUBMISSION]
    columns.insert(_PREDICTION_COLUMN_POSITION, "prediction")
    table = []
    for index, row in rows_by_index.items():
        prediction = answers[index].text if index in answers else ""
        table.append([prediction if column == "prediction" else row.get(column) or "" for column in columns])
    if output.suffix == ".xlsx":
        try:
            from openpyxl import Workbook
        except ImportError:
            output = new_output_file(output.with_suffix(".tsv"))
        else:
            workbook = Workbook()
            sheet = workbook.active
            for values in [columns, *table]:
                sheet.append(values)
            workbook.save(output)
            return output
    with output.open("x", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter="\t", lineterminator="\n").writerows([columns, *table])
    return output


def _tsv(data_root: Path, english: bool, split: str) -> Path:
    """The dev TSV (the benchmark's question file) or the test TSV; MMBench-CN's also in `mmbench/`."""
    benchmark = get_benchmark("mmbench" if english else "mmbench_cn")
    name = benchmark.question_file if split == "dev" else benchmark.files["test"]
    if english:
        return data_root / benchmark.directory / name
    return first_existing(data_root / benchmark.directory / name, data_root / get_benchmark("mmbench").directory / name)


def _dev_tsv(data_root: Path, english: bool) -> Path:
    return _tsv(data_root, english, "dev")


def _test_tsv(data_root: Path, english: bool) -> Path:
    return _tsv(data_root, english, "test")


@scorer("mmbench")
def score_en(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """MMBench dev accuracy (percent): circular (headline) and per row."""
    return _score(answers_file, _dev_tsv(data_root, english=True), allow_partial)


@scorer("mmbench_cn")
def score_cn(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """MMBench-CN dev accuracy (percent): circular (headline) and per row."""
    return _score(answers_file, _dev_tsv(data_root, english=False), allow_partial)


@submission_writer("mmbench")
def write_submission_en(answers_file: Path, data_root: Path, output: Path, allow_partial: bool = False) -> Path:
    """MMBench test predictions table for OpenCompass (unanswered rows: ValueError unless `allow_partial`)."""
    return _write_submission(answers_file, _test_tsv(data_root, english=True), output, allow_partial)


@submission_writer("mmbench_cn")
def write_submission_cn(answers_file: Path, data_root: Path, output: Path, allow_partial: bool = False) -> Path:
    """MMBench-CN test predictions table for OpenCompass (unanswered rows: ValueError unless `allow_partial`)."""
    return _write_submission(answers_file, _test_tsv(data_root, english=False), output, allow_partial)
