"""MME: acc and acc+ per subtask, perception / cognition totals, as MME's `eval_tool/calculation.py`
scores the files LLaVA's `playground/data/eval/MME/convert_answer_to_mme.py` writes.

Reads the ground truth from `<data_root>/MME/MME_Benchmark_release_version/<subtask>/`: the
question files are `questions_answers_YN/<image stem>.txt` where that folder exists (artwork,
celebrity, landmark, posters, scene) and `<image stem>.txt` beside the images otherwise; each holds
the image's two questions, one per line as "question<TAB>Yes|No".

Answers are matched like `convert_answer_to_mme.py`: the subtask is the first path component of the
answer's "question_id" (e.g. "artwork/10002.jpg"), the image its file stem, and the question the
answer's "prompt", compared with the answer-format sentences ("Answer the question using a single
word or phrase.", "Please answer yes or no."), "<image>" lines and extra whitespace removed.

Per subtask (`calculation.py`): an answer is read as "yes"/"no" when it is exactly that (lower-cased),
else as "yes" if its first four characters contain "yes", else "no" if they contain "no", else
"other" (always wrong). acc = percent of questions right; acc+ = percent of images with both
questions right; score = acc + acc+. Perception = sum of the 10 perception subtasks' scores (max
2000), cognition = sum of the 4 cognition ones (max 800). Every question must be answered unless
`allow_partial`; then an unanswered question is wrong and so is its image for acc+, and the metrics
stay over all questions and images of every subtask that has questions.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..benchmarks import get_benchmark
from .common import Answer, answer_sheet, percent, require_file
from .registry import scorer

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
_FORMAT_SENTENCES = ("Answer the question using a single word or phrase.", "Please answer yes or no.")

QuestionKey = tuple[str, str, str]  # (subtask, image stem, normalised question)


def question_key_text(question: str) -> str:
    """A question with the answer-format sentences, "<image>" lines and extra whitespace removed."""
    lines = [line for line in question.splitlines() if line.strip() != "<image>"]
    text = " ".join(lines)
    for sentence in _FORMAT_SENTENCES:
        text = text.replace(sentence, " ")
    return " ".join(text.split())


def parse_yes_no(text: str) -> str:
    """The answer read as "yes", "no" or "other", by `calculation.py`'s rule (exact word, else the first four characters)."""
    text = text.strip().lower()
    if text in ("yes", "no"):
        return text
    if "yes" in text[:4]:
        return "yes"
    return "no" if "no" in text[:4] else "other"


def _question_files(subtask_dir: Path) -> list[Path]:
    qa_dir = subtask_dir / "questions_answers_YN"
    return sorted((qa_dir if qa_dir.is_dir() else subtask_dir).glob("*.txt"))


def load_ground_truth(release_dir: Path) -> dict[QuestionKey, str]:
    """(subtask, image stem, normalised question) → "yes"/"no" for all 14 subtasks."""
    truth = {}
    for subtask in PERCEPTION + COGNITION:
        for question_file in _question_files(require_file(release_dir / subtask)):
            for line_number, line in enumerate(question_file.read_text(encoding="utf-8-sig").splitlines(), start=1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != 2 or fields[1].strip().lower() not in ("yes", "no"):
                    raise ValueError(f"{question_file}, line {line_number}: expected 'question<TAB>Yes|No'")
                truth[(subtask, question_file.stem, question_key_text(fields[0]))] = fields[1].strip().lower()
    return truth


def _answer_key(answer: Answer) -> QuestionKey:
    parts = answer.question_id.replace("\\", "/").split("/")
    return parts[0], Path(parts[-1]).stem, question_key_text(answer.prompt)


def subtask_metrics(results: dict[str, list[bool]], n_answered: int) -> dict[str, Any]:
    """acc, acc+ and score (percent) of one subtask from image → correctness of each of its questions
    (an unanswered question is False)."""
    questions = [right for image in results.values() for right in image]
    acc = percent(sum(questions), len(questions))
    acc_plus = percent(sum(len(image) == 2 and all(image) for image in results.values()), len(results))
    return {
        "acc": acc,
        "acc_plus": acc_plus,
        "score": acc + acc_plus,
        "n_answered": n_answered,
        "n_missing": len(questions) - n_answered,
        "n_questions": len(questions),
    }


@scorer("mme")
def score(answers_file: Path, data_root: Path, allow_partial: bool = False) -> dict[str, Any]:
    """MME per-subtask acc / acc+ / score and the perception (headline), cognition and overall totals."""
    release_dir = get_benchmark("mme").file(data_root, "release")
    truth = load_ground_truth(release_dir)
    sheet = answer_sheet(answers_file, truth, release_dir, allow_partial, key=_answer_key)
    results: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    answered: dict[str, int] = defaultdict(int)
    for key, label in truth.items():
        subtask, image, _ = key
        answer = sheet.get(key)
        results[subtask][image].append(answer is not None and parse_yes_no(answer.text) == label)
        answered[subtask] += answer is not None
    subtasks = {
        subtask: subtask_metrics(results[subtask], answered[subtask]) for subtask in PERCEPTION + COGNITION if subtask in results
    }
    perception = sum(subtasks[name]["score"] for name in PERCEPTION if name in subtasks)
    cognition = sum(subtasks[name]["score"] for name in COGNITION if name in subtasks)
    return {
        "headline": perception,
        "perception": perception,
        "cognition": cognition,
        "total": perception + cognition,
        "subtasks": subtasks,
        **sheet.counts(),
    }
