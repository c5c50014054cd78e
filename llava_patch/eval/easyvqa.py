"""The toy benchmarks: easy-VQA's test split (easy-vqa 1.0, MIT; 1 000 images of 64×64 pixels, one
coloured shape each, 9 673 questions) laid out like LLaVA's `playground/data/eval` in two benchmarks.

- `easyvqa_yesno` ("easy-VQA yes/no", POPE's format): easy-VQA's yes/no questions, scored by POPE's
  rule per split and `f1_mean`. The split is what a question asks, read from its template:
  "negation" — the negated templates ("is there not a …", "does the image not contain a …",
  "is no … present?"), whatever they ask about; "color" — the others that ask about a colour, always
  "a <colour> shape" ("is there a red shape?"); "shape" — the others, which name a shape ("is there a
  circle?"). Negation is a split of its own because there the answer "no" affirms what is named.
- `easyvqa` ("easy-VQA", GQA's format): the "what …" questions (one word: a shape or a colour), scored
  by GQA's exact match; the truth file types them "shape" or "color" by their answer.

Every question text is the question with its first letter capitalised and LLaVA-1.5's short-answer
suffix (`format_question`), in the benchmarks and in `training_questions`, which the toy model trains
on, so training and evaluation prompts are the same. Question ids are the questions' positions in
easy-VQA's `test/questions.json` (an int for POPE's format, its string for GQA's), so a question keeps
its id in every sample. Images are copied (`<image id>.png`), to each benchmark the ones its questions
show: the data root stands on its own.

`images=n` keeps n of the 1 000 test images, a stratified sample over (shape, colour): each stratum is
shuffled with `seed` and the strata are interleaved by relative rank, so every stratum gets its share
of n within one image, and a smaller sample is part of a larger one with the same seed. Each image's
shape and colour come from its own questions: the answer to a "what" question, the shape or colour a
"what" question names ("what color is the triangle?"), or what a yes/no question affirms ("is there a
red shape?" yes, "is there not a circle?" no). Some images are never told their colour (80 of the
1 000) or their shape (56) by their questions; "?" stands for it in the stratum.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections import defaultdict
from pathlib import Path

from ..models.toy_parts import EASY_VQA, part
from .benchmarks import get_benchmark
from .files import read_json
from .minibench import SHORT_ANSWER, write_question_files

SHAPES = frozenset({"circle", "rectangle", "triangle"})  # easy-VQA's shapes; its other words are colours
YES_NO = frozenset({"yes", "no"})
_NEGATION_WORDS = frozenset({"not", "no"})
UNKNOWN = "?"  # a shape or colour that the image's questions never tell


def format_question(question: str) -> str:
    """The prompt text of an easy-VQA question: first letter capitalised, LLaVA-1.5's short-answer suffix."""
    return question[:1].upper() + question[1:] + "\n" + SHORT_ANSWER


def question_kind(question: str, answer: str) -> str:
    """What a question asks: "shape" or "color" ("what" questions: by the answer; yes/no ones: by the
    template, see the module docstring), or "negation" for a negated yes/no question."""
    if answer not in YES_NO:
        return "shape" if answer in SHAPES else "color"
    words = set(_words(question))
    if words & _NEGATION_WORDS:
        return "negation"
    return "color" if "shape" in words else "shape"  # colour questions ask about "a <colour> shape"


def training_questions(split: str = "train") -> list[tuple[Path, str, str]]:
    """(image, prompt text as the benchmarks ask it, answer) for every question of easy-VQA's `split`."""
    folder, questions = _source(split)
    return [(folder / "images" / f"{image_id}.png", format_question(question), answer)
            for question, answer, image_id in questions]


def write_calibration_questions(output_dir: str | Path, count: int, seed: int = 0) -> Path:
    """Calibration questions for the fitting commands (`llava-patch fitprune-recipe`, `sparsevlm-calibrate`)
    from easy-VQA's *training* split, never the test split the benchmarks ask: one question of each of
    `count` training images (a stratified sample as in `build_easyvqa`; the question drawn with `seed`,
    so the mix of kinds is the split's), asked as the benchmarks ask it (`format_question`). Writes
    `output_dir`/questions.jsonl (LLaVA's question JSONL, `{"question_id", "image", "text"}`; the id is
    the question's position in train/questions.json; file order) and `output_dir`/images/<image id>.png.
    `output_dir` must not exist (nothing is overwritten). Returns the JSONL's path."""
    root = Path(output_dir)
    if root.exists():
        raise FileExistsError(f"{root}: exists; nothing is overwritten")
    folder, questions = _source("train")
    strata = _strata(questions)
    if not 1 <= count <= len(strata):
        raise ValueError(f"count={count}: easy-VQA's training split has {len(strata)} images")
    chosen = _sample(strata, count, seed)
    numbers = defaultdict(list)  # image id → its questions' positions
    for number, (_, _, image_id) in enumerate(questions):
        if image_id in chosen:
            numbers[image_id].append(number)
    rng = random.Random(seed)
    picked = sorted(rng.choice(numbers[image_id]) for image_id in sorted(numbers))
    partial = root.with_name(root.name + ".partial")  # renamed into place once complete
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "images").mkdir(parents=True)
    lines = []
    for number in picked:
        question, _, image_id = questions[number]
        shutil.copyfile(folder / "images" / f"{image_id}.png", partial / "images" / f"{image_id}.png")
        lines.append(json.dumps({"question_id": number, "image": f"{image_id}.png", "text": format_question(question)}))
    (partial / "questions.jsonl").write_text("\n".join(lines) + "\n")
    partial.rename(root)
    return root / "questions.jsonl"


def build_easyvqa(data_root: str | Path, images: int | None = None, seed: int = 0) -> Path:
    """Write easyvqa_yesno/ and easyvqa/ under `data_root` (which must not hold them yet) from easy-VQA's
    test split: every question of `images` test images (None: all), a stratified sample; returns data_root."""
    root = Path(data_root)
    yes_no, short = get_benchmark("easyvqa_yesno"), get_benchmark("easyvqa")
    for benchmark in (yes_no, short):
        if (root / benchmark.directory).exists():
            raise FileExistsError(f"{root / benchmark.directory}: exists; nothing is overwritten")
    folder, questions = _source("test")
    chosen = _sample(_strata(questions), images, seed)
    pope_questions, labels = [], {split: [] for split in yes_no.splits}
    gqa_questions, truth = [], {}
    for number, (question, answer, image_id) in enumerate(questions):
        if image_id not in chosen:
            continue
        image, kind = f"{image_id}.png", question_kind(question, answer)
        if answer in YES_NO:
            pope_questions.append({"question_id": number, "image": image, "text": format_question(question),
                                   "category": kind})
            labels[kind].append({"question_id": number, "image": image, "text": question, "label": answer})
        else:
            gqa_questions.append({"question_id": str(number), "image": image, "text": format_question(question)})
            truth[str(number)] = {"imageId": str(image_id), "question": question, "answer": answer,
                                  "isBalanced": True,
                                  "types": {"structural": "query", "semantic": "attr", "detailed": kind}}
    # Each benchmark gets the images its questions show (some images have no "what" question).
    for benchmark, rows in ((yes_no, pope_questions), (short, gqa_questions)):
        image_folder = benchmark.image_path(root, "")
        image_folder.mkdir(parents=True)
        for image in sorted({row["image"] for row in rows}):
            shutil.copyfile(folder / "images" / image, image_folder / image)
    write_question_files(root, yes_no, pope_questions, labels, short, gqa_questions, truth)
    return root


def _source(split: str) -> tuple[Path, list[tuple[str, str, int]]]:
    """easy-VQA's folder of `split` and its questions, (question, answer, image id) in file order."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown easy-VQA split {split!r}; expected 'train' or 'test'")
    folder = part(EASY_VQA) / split
    return folder, [(question, answer, image_id) for question, answer, image_id in read_json(folder / "questions.json")]


def _words(question: str) -> list[str]:
    return re.findall(r"[a-z]+", question.lower())


def _strata(questions: list[tuple[str, str, int]]) -> dict[int, tuple[str, str]]:
    """Image id → (shape, colour) as its questions tell them (UNKNOWN where they do not)."""
    vocabulary = set((part(EASY_VQA) / "answers.txt").read_text().split()) - YES_NO  # shapes and colours
    told: dict[int, dict[str, set[str]]] = defaultdict(lambda: {"shape": set(), "color": set()})
    for question, answer, image_id in questions:
        attributes = told[image_id]  # every image gets a stratum, told something or not
        # The one shape or colour word a question names (a "what" question names at most one).
        named = [word for word in _words(question) if word in vocabulary]
        if answer not in YES_NO:
            attributes[question_kind(question, answer)].add(answer)
            affirmed = named  # "what color is the triangle?" → a triangle
        else:
            # "is there a red shape?" yes, "is there not a circle?" no: the named attribute is the image's.
            affirmed = named if (answer == "yes") != (question_kind(question, answer) == "negation") else []
        for word in affirmed:
            attributes["shape" if word in SHAPES else "color"].add(word)
    strata = {}
    for image_id, attributes in told.items():
        if any(len(values) > 1 for values in attributes.values()):
            raise ValueError(f"easy-VQA image {image_id}: its questions disagree about it ({attributes})")
        strata[image_id] = tuple(min(attributes[name], default=UNKNOWN) for name in ("shape", "color"))
    return strata


def _sample(strata: dict[int, tuple[str, str]], images: int | None, seed: int) -> set[int]:
    """`images` image ids stratified over the strata (all of them for None); see the module docstring."""
    if images is None:
        return set(strata)
    if not 1 <= images <= len(strata):
        raise ValueError(f"images={images}: easy-VQA's test split has {len(strata)} images")
    rng = random.Random(seed)
    members = defaultdict(list)
    for image_id in sorted(strata):
        members[strata[image_id]].append(image_id)
    ranked = []
    for index, stratum in enumerate(sorted(members)):
        group = members[stratum]
        rng.shuffle(group)
        # Relative rank: the first n of the interleaved order hold each stratum's share of n.
        ranked += [((rank + 0.5) / len(group), index, image_id) for rank, image_id in enumerate(group)]
    return {image_id for *_, image_id in sorted(ranked)[:images]}
