"""Benchmarks as LLaVA-1.5's evaluation scripts run them (scripts/v1_5/eval/*.sh): where the question
file and images live under the data root (LLaVA's `playground/data/eval`), how a question becomes the
prompt's text, and how many new tokens are generated (128 for `model_vqa_loader` benchmarks, 1024 for
`model_vqa_science`, `model_vqa_mmbench` and `model_vqa`).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

OPTION_SUFFIX = "Answer with the option's letter from the given choices directly."
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
VIDEO_QA_PAIRS = 1000  # the protocol judges the first 1 000 QA pairs of each benchmark
OPTION_SUFFIX_CN = "请直接回答选项字母。"


@dataclass
class Question:
    question_id: object
    text: str  # the question as it follows "<image>\n" in the prompt (answer-format suffix included)
    image: str | Image.Image | None  # a file under the image folder, an image, or None (text only)
    record: dict = field(default_factory=dict)  # extra fields LLaVA's answer file carries for this benchmark


@dataclass
class Benchmark:
    name: str
    directory: str  # under the data root
    question_file: str  # under the directory
    image_folder: str | None  # under the directory
    max_new_tokens: int
    load: Callable[[Path], list[Question]]
    video: bool = False  # questions name videos (Video-LLaVA's zero-shot video QA)

    def questions(self, data_root: Path) -> list[Question]:
        path = Path(data_root) / self.directory / self.question_file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; expected LLaVA's layout {self.directory}/{self.question_file} "
                                    f"under the data root (playground/data/eval)")
        return self.load(path)

    def image_path(self, data_root: Path, image: str) -> Path:
        folder = Path(data_root) / self.directory / (self.image_folder or "")
        if not self.video:
            return folder / image
        # Video-LLaVA's run_inference_video_qa tries these extensions in turn.
        for extension in VIDEO_EXTENSIONS:
            if (folder / (image + extension)).is_file():
                return folder / (image + extension)
        return folder / (image + VIDEO_EXTENSIONS[0])


def read_jsonl(path: Path) -> list[dict]:
    """JSON Lines; a malformed line raises an error naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: malformed JSON line ({error.msg})") from error
    return rows


def _loader_questions(path: Path) -> list[Question]:
    """`model_vqa_loader` / `model_vqa` question files: {"question_id", "image", "text"} per line."""
    questions = []
    for number, row in enumerate(read_jsonl(path), start=1):
        missing = {"question_id", "image", "text"} - set(row)
        if missing:
            raise ValueError(f"{path}:{number}: missing {', '.join(sorted(missing))}")
        questions.append(Question(row["question_id"], row["text"], row["image"]))
    return questions


def _science_questions(path: Path) -> list[Question]:
    """`model_vqa_science --single-pred-prompt`: conversations[0] without "<image>", plus the option suffix;
    questions without a picture are asked as text only."""
    questions = []
    for row in _read_json(path):
        text = row["conversations"][0]["value"].replace("<image>", "").strip() + "\n" + OPTION_SUFFIX
        image = row.get("image")
        prompt = ("<image>\n" + text) if image else text
        questions.append(Question(row["id"], text, image, {"prompt": prompt}))
    return questions


def _mmbench_loader(suffix: str) -> Callable[[Path], list[Question]]:
    """`model_vqa_mmbench --single-pred-prompt` (one round): hint, question, lettered options, suffix;
    the image is base64 inside the TSV."""

    def load(path: Path) -> list[Question]:
        csv.field_size_limit(sys.maxsize)
        questions = []
        with open(path, encoding="utf-8", newline="") as file:
            for number, row in enumerate(csv.DictReader(file, delimiter="\t"), start=2):
                try:
                    options = [row[letter] for letter in "ABCD" if _present(row.get(letter))]
                    text = row["question"] if not _present(row.get("hint")) else row["hint"] + "\n" + row["question"]
                    for letter, option in zip("ABCD", options):
                        text += f"\n{letter}. {option}"
                    image = Image.open(io.BytesIO(base64.b64decode(row["image"]))).convert("RGB")
                except (KeyError, ValueError, OSError) as error:
                    raise ValueError(f"{path}:{number}: unreadable MMBench row ({error})") from error
                record = {"round_id": 0, "prompt": text, "options": options, "option_char": list("ABCD"[: len(options)])}
                questions.append(Question(int(row["index"]), text + "\n" + suffix, image, record))
        return questions

    return load


def _video_qa_questions(path: Path) -> list[Question]:
    """Video-LLaVA's GPT_Zero_Shot_QA files: test_q.json [{video_name, question_id, question}] and, beside
    it, test_a.json [{question_id, answer}]; the first 1 000 pairs in file order."""
    answers_path = path.with_name(path.name.replace("_q", "_a"))
    if not answers_path.is_file():
        raise FileNotFoundError(f"{answers_path}: missing (the answers beside {path.name})")
    questions, answers = (_read_json(p) for p in (path, answers_path))
    truth = {row["question_id"]: row["answer"] for row in answers}
    selected = []
    for row in questions[:VIDEO_QA_PAIRS]:
        if row["question_id"] not in truth:
            raise ValueError(f"{answers_path}: no answer for question {row['question_id']!r}")
        selected.append(Question(row["question_id"], row["question"], row["video_name"],
                                 {"answer": truth[row["question_id"]]}))
    return selected


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from error


def _present(value) -> bool:
    return value is not None and str(value).strip().lower() not in ("", "nan", "none")


def _loader(name: str, directory: str, question_file: str, image_folder: str, max_new_tokens: int = 128) -> Benchmark:
    return Benchmark(name, directory, question_file, image_folder, max_new_tokens, _loader_questions)


BENCHMARKS: dict[str, Benchmark] = {benchmark.name: benchmark for benchmark in [
    _loader("vqav2", "vqav2", "llava_vqav2_mscoco_test-dev2015.jsonl", "test2015"),
    _loader("gqa", "gqa", "llava_gqa_testdev_balanced.jsonl", "data/images"),
    _loader("vizwiz", "vizwiz", "llava_test.jsonl", "test"),
    _loader("textvqa", "textvqa", "llava_textvqa_val_v051_ocr.jsonl", "train_images"),
    _loader("pope", "pope", "llava_pope_test.jsonl", "val2014"),
    _loader("mme", "MME", "llava_mme.jsonl", "MME_Benchmark_release_version"),
    _loader("seed", "seed_bench", "llava-seed-bench.jsonl", ""),
    _loader("mmvet", "mm-vet", "llava-mm-vet.jsonl", "images", max_new_tokens=1024),
    Benchmark("sqa", "scienceqa", "llava_test_CQM-A.json", "images/test", 1024, _science_questions),
    Benchmark("mmbench", "mmbench", "mmbench_dev_20230712.tsv", None, 1024, _mmbench_loader(OPTION_SUFFIX)),
    Benchmark("mmbench_cn", "mmbench_cn", "mmbench_dev_cn_20231003.tsv", None, 1024, _mmbench_loader(OPTION_SUFFIX_CN)),
    *[Benchmark(name, f"GPT_Zero_Shot_QA/{directory}_Zero_Shot_QA", "test_q.json", "videos", 1024, _video_qa_questions, video=True)
      for name, directory in (("msvd", "MSVD"), ("msrvtt", "MSRVTT"), ("tgif", "TGIF"), ("activitynet", "Activitynet"))],
]}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
