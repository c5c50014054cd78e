"""Every method on one image: what reaches the language model, and the answer (`llava-patch demo`).

    llava-patch demo            # the toy LLaVA on an easy-VQA test image and its question
    llava-patch demo --model llava-hf/llava-1.5-7b-hf --image photo.jpg --question "What is shown?"

Without --model the model is the toy LLaVA (`models.toy`: DINOv2 ViT-S/14 + SmolLM2-135M with a
projector trained on easy-VQA), a real trained model that runs on a CPU; without --image the image is
an easy-VQA test image and, without --question, the question is one of its own, whose answer from the
data is printed beside each row. Each row is one `generate` call with the evaluation protocol
(`load_model`'s prompt, preprocessing and greedy decoding), timed end to end with wall-clock time after
one warm-up call, on the device and dtype printed in the header: a smoke test, not a benchmark (that
is `llava-patch bench`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .. import apply, method_info, methods
from ..models.loading import VLM, load_model
from ..models.media import read_image
from .easyvqa import training_questions
from .scoring.gqa import normalize_prediction

RATIOS = (0.75, 0.9, 0.95)
# The default question: its position in easy-VQA's test/questions.json, "What is the color of the
# triangle?" on 0.png (a red triangle; answer "red"). A colour question: every patch of the shape shows
# its colour, so a few kept tokens could still answer it. The toy answers it right unpruned (measured
# with the committed projector; tests/eval/test_demo.py checks it).
EASY_VQA_QUESTION = 1
EASY_VQA_SOURCE = "easy-VQA test split (easy-vqa 1.0, MIT)"
FREE_QUESTION = "Describe the image briefly."  # for an image of the user's
SHORT_ANSWER_TOKENS = 4  # easy-VQA's answers are one word: a few tokens and the end of turn
FREE_ANSWER_TOKENS = 16


@dataclass(frozen=True)
class DemoInput:
    """The image and question the demo asks, where they come from, and the data's answer (None if unknown)."""

    image: Image.Image
    image_source: str
    question: str
    expected: str | None


def demo_settings(num_patches: int, variable_counts: bool = True) -> list[tuple[str, dict]]:
    """The unpruned model, then every method: at each of RATIOS, or at each of its own budgets below
    `num_patches` (PruMerge+'s 64/128/256 on a 576-patch tower) where the model takes per-image counts.
    Methods whose budgets need a recipe fitted to the model (FitPrune) are not run."""
    settings: list[tuple[str, dict]] = [("none", {})]
    for name in methods():
        info = method_info(name)
        if info.needs_recipe:
            continue
        if info.takes_reduction_ratio:
            settings += [(name, {"reduction_ratio": ratio}) for ratio in RATIOS]
        elif info.budgets and (variable_counts or not info.variable_count):
            settings += [(name, {"keep": keep}) for keep in info.budgets if keep < num_patches]
    return settings


def demo_input(image: str | None, question: str | None) -> DemoInput:
    """The user's image and question where given; otherwise easy-VQA's test image of question
    `EASY_VQA_QUESTION` (and that question, with its answer, when no question is given)."""
    if image is not None:
        try:
            picture = read_image(image)
        except (OSError, ValueError) as error:
            raise ValueError(f"--image {error}") from error
        return DemoInput(picture, image, question or FREE_QUESTION, None)
    path, easy_question, answer = training_questions("test")[EASY_VQA_QUESTION]
    picture, source = read_image(str(path)), f"{path} ({EASY_VQA_SOURCE}, question {EASY_VQA_QUESTION})"
    if question is not None:
        return DemoInput(picture, source, question, None)
    return DemoInput(picture, source, easy_question, answer)


def run_demo(model: str | None, image: str | None, question: str | None = None, max_new_tokens: int | None = None,
             device: str | None = None, backend: str = "hf", output: str | None = None) -> list[dict]:
    """Rows of (method, reduction ratio, visual tokens that reached the LLM, seconds, answer, the data's
    answer); printed as they come and, with `output` (a new file), written as JSON lines. model None: the
    toy LLaVA (built into its cache on first use). max_new_tokens None: a few for easy-VQA's one-word
    answers, 16 for other questions."""
    if output and Path(output).exists():
        raise FileExistsError(f"--output {output} exists; choose a new file (nothing is overwritten)")
    asked = demo_input(image, question)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if max_new_tokens is None:
        max_new_tokens = SHORT_ANSWER_TOKENS if asked.expected is not None else FREE_ANSWER_TOKENS
    if model is None:
        from ..models.toy import toy_checkpoint

        model, backend = str(toy_checkpoint()), "hf"
        print(f"model: {model} (no --model given: the toy LLaVA, DINOv2 ViT-S/14 + SmolLM2-135M with a projector "
              "trained on easy-VQA)")
    else:
        print(f"model: {model} (backend {backend})")
    print(f"image: {asked.image_source}")
    print(f"question: {asked.question!r}"
          + (f"; expected answer (from the data): {asked.expected!r}" if asked.expected is not None else ""))
    rows = _run(_load(model, backend, device), asked, max_new_tokens, device)
    if output:
        with open(output, "x") as file:
            file.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


def _load(path: str, backend: str, device: str) -> VLM:
    try:
        return load_model(path, backend=backend, device=device)
    except OSError as error:
        raise ValueError(f"--model {path}: cannot load a LLaVA checkpoint from it ({error})") from error


def _run(vlm: VLM, asked: DemoInput, max_new_tokens: int, device: str) -> list[dict]:
    print(f"device={device} dtype={vlm.model.dtype} torch={torch.__version__} threads={torch.get_num_threads()}; "
          f"greedy generate, max_new_tokens={max_new_tokens}; wall time of one call after one warm-up call "
          "(preprocessing, prefill and decoding)")
    with apply(vlm.model, "none") as handle:
        num_patches, variable_counts = handle.adapter.num_patches, handle.adapter.accepts_variable_counts
    rows = []
    for method, budget in demo_settings(num_patches, variable_counts):
        with apply(vlm.model, method, **budget) as handle:
            vlm.generate([asked.image], [asked.question], max_new_tokens)  # warm-up
            _synchronize(device)
            start = time.perf_counter()
            answer = vlm.generate([asked.image], [asked.question], max_new_tokens)[0]
            _synchronize(device)
            row = {"method": method, "reduction_ratio": budget.get("reduction_ratio", 0.0 if not budget else None),
                   "keep": budget.get("keep"), "visual_tokens_to_llm": handle.last_visual_tokens[0],
                   # LLM-stage methods: the mean over decoder layers, the count their tables print
                   "layer_mean_visual_tokens": (handle.last_equivalent_visual_tokens or [None])[0],
                   "seconds": round(time.perf_counter() - start, 4), "answer": answer,
                   "expected_answer": asked.expected}
        rows.append(row)
        setting = f"keep={row['keep']}" if row["keep"] else f"R={row['reduction_ratio']}"
        layer_mean = row["layer_mean_visual_tokens"]
        print(f"{method:13s} {setting:9s} tokens={row['visual_tokens_to_llm']:4d}"
              f"{f' (layer mean {layer_mean:.1f})' if layer_mean is not None else ''} "
              f"time={row['seconds']:.3f}s  {row['answer']!r}{_verdict(answer, asked.expected)}")
    return rows


def _verdict(answer: str, expected: str | None) -> str:
    """Beside a row: whether the answer is the data's (GQA's exact match, as the easyvqa benchmark scores)."""
    if expected is None:
        return ""
    return f"  {'=' if normalize_prediction(answer) == expected else '≠'} expected {expected!r}"


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
