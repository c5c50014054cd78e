"""A bundled mini benchmark: generated pictures with questions in the POPE and GQA formats, laid out
like LLaVA's `playground/data/eval`, so the whole pipeline runs anywhere without downloads.

Each picture is a plain background with a few coloured shapes. POPE asks "Is there a <shape> in the
image?" (yes/no, in the three splits); GQA asks "What color is the <shape>?" (one word). The images
are made from a seed: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from .benchmarks import Benchmark, get_benchmark

SHAPES = ("circle", "square", "triangle")
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
POPE_SPLITS = ("adversarial", "popular", "random")
SHORT_ANSWER = "Answer the question using a single word or phrase."


def _draw(rng: random.Random, size: int) -> tuple[Image.Image, dict[str, str]]:
    image = Image.new("RGB", (size, size), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    shown = {}
    for shape in rng.sample(SHAPES, rng.randint(1, 2)):
        color = rng.choice(sorted(COLORS))
        x, y, r = rng.randint(size // 5, 4 * size // 5), rng.randint(size // 5, 4 * size // 5), size // 7
        box = (x - r, y - r, x + r, y + r)
        if shape == "circle":
            draw.ellipse(box, fill=COLORS[color])
        elif shape == "square":
            draw.rectangle(box, fill=COLORS[color])
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=COLORS[color])
        shown[shape] = color
    return image, shown


def build_minibench(data_root: str | Path, images: int = 12, seed: int = 0, size: int = 96) -> Path:
    """Write pope/ and gqa/ under `data_root` (which must not hold them yet); returns data_root."""
    root = Path(data_root)
    pope, gqa = get_benchmark("pope"), get_benchmark("gqa")
    for benchmark in (pope, gqa):
        if (root / benchmark.directory).exists():
            raise FileExistsError(f"{root / benchmark.directory}: exists; nothing is overwritten")
    rng = random.Random(seed)
    pope_images, gqa_images = pope.image_path(root, ""), gqa.image_path(root, "")
    pope_images.mkdir(parents=True)
    gqa_images.mkdir(parents=True)
    pope_questions, pope_labels = [], {split: [] for split in POPE_SPLITS}
    gqa_questions, gqa_truth = [], {}
    for index in range(images):
        picture, shown = _draw(rng, size)
        name = f"mini_{index:04d}.jpg"
        picture.save(pope_images / name, quality=95)
        picture.save(gqa_images / name, quality=95)
        for split_index, split in enumerate(POPE_SPLITS):
            shape = rng.choice(SHAPES)
            question_id = len(pope_questions)
            text = f"Is there a {shape} in the image?"
            pope_questions.append({"question_id": question_id, "image": name,
                                   "text": text + "\n" + SHORT_ANSWER, "category": split})
            pope_labels[split].append({"question_id": question_id, "image": name, "text": text,
                                       "label": "yes" if shape in shown else "no"})
        for shape, color in shown.items():
            question_id = f"mini{len(gqa_questions):05d}"
            question = f"What color is the {shape}?"
            gqa_questions.append({"question_id": question_id, "image": name, "text": question + "\n" + SHORT_ANSWER})
            gqa_truth[question_id] = {"imageId": name[:-4], "question": question, "answer": color,
                                      "fullAnswer": f"The {shape} is {color}.", "isBalanced": True,
                                      "types": {"structural": "query", "semantic": "attr", "detailed": "color"}}
    write_question_files(root, pope, pope_questions, pope_labels, gqa, gqa_questions, gqa_truth)
    return root


def write_question_files(root: Path, yes_no: Benchmark, yes_no_questions: list[dict], labels: dict[str, list[dict]],
                         short: Benchmark, short_questions: list[dict], truth: dict[str, dict]) -> None:
    """Write a yes/no benchmark in POPE's layout (question file, label file per split) and a short-answer
    one in GQA's (question file, truth JSON) under `root`, where their records say."""
    _write_jsonl(yes_no.question_path(root), yes_no_questions)
    for split, rows in labels.items():
        _write_jsonl(yes_no.file(root, "labels", split=split), rows)
    _write_jsonl(short.question_path(root), short_questions)
    short.file(root, "questions").write_text(json.dumps(truth, indent=1))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
