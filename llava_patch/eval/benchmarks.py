"""The benchmarks: one `Benchmark` record each, the one place that says everything about a benchmark.

A record names its files under the data root (LLaVA's `playground/data/eval`: the question file, the
images, the ground truth its scorer or judge reads), how a question becomes the prompt's text (its
loader, as LLaVA-1.5's and Video-LLaVA's evaluation scripts build it), its decoding (new tokens: 128
for `model_vqa_loader` benchmarks, 1024 for `model_vqa_science`, `model_vqa_mmbench`, `model_vqa` and
video QA; greedy, except Video-LLaVA's sampling), who scores it (a registered local scorer of
`llava_patch.eval.scoring`, an LLM judge, or the benchmark's server), the metric key of its headline
number and the title the papers print for it. The runner, the sweep and the paper tables read these
records, so adding a benchmark is one record here plus its scorer module. See docs/protocol.md.
"""

from __future__ import annotations

import base64
import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Literal, Mapping

from PIL import Image

from .files import read_json, read_jsonl

OPTION_SUFFIX = "Answer with the option's letter from the given choices directly."
OPTION_SUFFIX_CN = "请直接回答选项字母。"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
VIDEO_QA_PAIRS = 1000  # the protocol judges the first 1 000 QA pairs of each benchmark

# Who judges the free-form answers of a benchmark (`Benchmark.judge`).
VIDEO_QA_JUDGE = "video_qa"  # Video-LLaVA's GPT judge: always (yes/no + 0–5 score)
MMVET_GRADER = "mmvet"  # MM-Vet's GPT grader: when an API key is set (otherwise the submission file)
Judge = Literal["video_qa", "mmvet"]


@dataclass
class Question:
    question_id: object
    text: str  # the question as it follows "<image>\n" in the prompt (answer-format suffix included)
    image: str | Image.Image | None  # a file under the image folder, an image, or None (text only)
    record: dict = field(default_factory=dict)  # extra fields LLaVA's answer file carries for this benchmark


@dataclass(frozen=True)
class Benchmark:
    name: str  # the runner's and the command line's name
    display: str  # the column title as the papers print it
    directory: str  # under the data root
    question_file: str  # under the directory
    image_folder: str | None  # under the directory (None: the images are inside the question file)
    load: Callable[[Path], list[Question]]  # question file → questions, prompt text included
    headline: str  # the metrics key of the number the papers' tables print
    scorer: str | None = None  # the registered local scorer; None: scored by a judge or the server
    judge: Judge | None = None
    max_new_tokens: int = 128
    greedy: bool = True  # False: the protocol samples (Video-LLaVA: temperature 0.1, seeded per batch)
    video: bool = False  # questions name videos (Video-LLaVA's zero-shot video QA)
    files: Mapping[str, str] = field(default_factory=dict)  # other files under the directory, by role
    splits: tuple[str, ...] = ()  # yes/no benchmarks scored as POPE: the "category" values their questions may take

    def __post_init__(self):
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    def question_path(self, data_root: str | Path) -> Path:
        return Path(data_root) / self.directory / self.question_file

    def file(self, data_root: str | Path, role: str, **fields: str) -> Path:
        """The file `files[role]` under the data root; `fields` fill its {placeholders}."""
        return Path(data_root) / self.directory / self.files[role].format(**fields)

    def questions(self, data_root: str | Path) -> list[Question]:
        path = self.question_path(data_root)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; expected LLaVA's layout {self.directory}/{self.question_file} "
                                    f"under the data root (playground/data/eval)")
        return self.load(path)

    def image_path(self, data_root: str | Path, image: str) -> Path:
        folder = Path(data_root) / self.directory / (self.image_folder or "")
        if not self.video:
            return folder / image
        # Video-LLaVA's run_inference_video_qa tries these extensions in turn.
        for extension in VIDEO_EXTENSIONS:
            if (folder / (image + extension)).is_file():
                return folder / (image + extension)
        return folder / (image + VIDEO_EXTENSIONS[0])


def _loader_questions(path: Path) -> list[Question]:
    """`model_vqa_loader` / `model_vqa` question files: {"question_id", "image", "text"} per line."""
    questions = []
    for number, row in read_jsonl(path):
        missing = {"question_id", "image", "text"} - set(row)
        if missing:
            raise ValueError(f"{path}, line {number}: missing {', '.join(sorted(missing))}")
        questions.append(Question(row["question_id"], row["text"], row["image"]))
    return questions


def _science_questions(path: Path) -> list[Question]:
    """`model_vqa_science --single-pred-prompt`: conversations[0] without "<image>", plus the option suffix;
    questions without a picture are asked as text only."""
    questions = []
    for row in read_json(path):
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
                    raise ValueError(f"{path}, line {number}: unreadable MMBench row ({error})") from error
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
    questions, answers = read_json(path), read_json(answers_path)
    truth = {row["question_id"]: row["answer"] for row in answers}
    selected = []
    for row in questions[:VIDEO_QA_PAIRS]:
        if row["question_id"] not in truth:
            raise ValueError(f"{answers_path}: no answer for question {row['question_id']!r}")
        selected.append(Question(row["question_id"], row["question"], row["video_name"],
                                 {"answer": truth[row["question_id"]]}))
    return selected


def _present(value) -> bool:
    return value is not None and str(value).strip().lower() not in ("", "nan", "none")


def _video(name: str, display: str, directory: str) -> Benchmark:
    return Benchmark(name, display, f"GPT_Zero_Shot_QA/{directory}_Zero_Shot_QA", "test_q.json", "videos",
                     _video_qa_questions, headline="accuracy", judge=VIDEO_QA_JUDGE, max_new_tokens=1024,
                     greedy=False, video=True, files={"answers": "test_a.json"})


BENCHMARKS: dict[str, Benchmark] = {benchmark.name: benchmark for benchmark in [
    # Server-scored (EvalAI test-dev upload); `vqav2_val` scores the val split locally.
    Benchmark("vqav2", "VQAv2", "vqav2", "llava_vqav2_mscoco_test-dev2015.jsonl", "test2015", _loader_questions,
              headline="accuracy", files={"upload_questions": "llava_vqav2_mscoco_test2015.jsonl",
                                          "val_annotations": "v2_mscoco_val2014_annotations.json"}),
    Benchmark("gqa", "GQA", "gqa", "llava_gqa_testdev_balanced.jsonl", "data/images", _loader_questions,
              headline="accuracy", scorer="gqa", files={"questions": "data/testdev_balanced_questions.json"}),
    Benchmark("vizwiz", "VizWiz", "vizwiz", "llava_test.jsonl", "test", _loader_questions, headline="accuracy"),
    Benchmark("textvqa", "TextVQA", "textvqa", "llava_textvqa_val_v051_ocr.jsonl", "train_images", _loader_questions,
              headline="accuracy", scorer="textvqa", files={"annotations": "TextVQA_0.5.1_val.json"}),
    Benchmark("pope", "POPE", "pope", "llava_pope_test.jsonl", "val2014", _loader_questions, headline="f1_mean",
              scorer="pope", files={"labels": "coco/coco_pope_{split}.json"}, splits=("adversarial", "popular", "random")),
    Benchmark("mme", "MME", "MME", "llava_mme.jsonl", "MME_Benchmark_release_version", _loader_questions,
              headline="perception", scorer="mme", files={"release": "MME_Benchmark_release_version"}),
    Benchmark("seed", "SEED", "seed_bench", "llava-seed-bench.jsonl", "", _loader_questions,
              headline="image_accuracy", scorer="seed", files={"annotations": "SEED-Bench.json"}),
    # Graded by MM-Vet's GPT grader when an API key is set; otherwise its submission file.
    Benchmark("mmvet", "MM-Vet", "mm-vet", "llava-mm-vet.jsonl", "images", _loader_questions, headline="score",
              judge=MMVET_GRADER, max_new_tokens=1024, files={"grader_truth": "mm-vet.json"}),
    Benchmark("sqa", "SQA-IMG", "scienceqa", "llava_test_CQM-A.json", "images/test", _science_questions,
              headline="image_accuracy", scorer="sqa_img", max_new_tokens=1024,
              files={"problems": "problems.json", "splits": "pid_splits.json"}),
    Benchmark("mmbench", "MMB", "mmbench", "mmbench_dev_20230712.tsv", None, _mmbench_loader(OPTION_SUFFIX),
              headline="accuracy", scorer="mmbench", max_new_tokens=1024, files={"test": "mmbench_test_20230712.tsv"}),
    Benchmark("mmbench_cn", "MMB-CN", "mmbench_cn", "mmbench_dev_cn_20231003.tsv", None, _mmbench_loader(OPTION_SUFFIX_CN),
              headline="accuracy", scorer="mmbench_cn", max_new_tokens=1024, files={"test": "mmbench_test_cn_20231003.tsv"}),
    # The toy benchmarks, built from easy-VQA's test split by `llava_patch.eval.easyvqa` (POPE's and GQA's formats).
    # Their answers are one word: 16 new tokens bound the decoding of a model that answers in sentences.
    Benchmark("easyvqa_yesno", "easy-VQA yes/no", "easyvqa_yesno", "llava_easyvqa_yesno.jsonl", "images",
              _loader_questions, headline="f1_mean", scorer="easyvqa_yesno", max_new_tokens=16,
              files={"labels": "labels/easyvqa_{split}.json"}, splits=("shape", "color", "negation")),
    Benchmark("easyvqa", "easy-VQA", "easyvqa", "llava_easyvqa.jsonl", "images", _loader_questions,
              headline="accuracy", scorer="easyvqa", files={"questions": "easyvqa_questions.json"},
              max_new_tokens=16),
    _video("msvd", "MSVD", "MSVD"),
    _video("msrvtt", "MSRVTT", "MSRVTT"),
    _video("tgif", "TGIF", "TGIF"),
    _video("activitynet", "ActivityNet", "Activitynet"),
]}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
