"""Every method on one image: what reaches the language model, and the answer (`llava-patch demo`).

    llava-patch demo --model llava-hf/llava-1.5-7b-hf --image photo.jpg
    llava-patch demo            # no checkpoint: a tiny random model (meaningless answers)

Each row is one `generate` call with the evaluation protocol (`load_model`'s prompt, preprocessing and
greedy decoding), timed end to end with wall-clock time after one warm-up call, on the device and
dtype printed in the header: a smoke test, not a benchmark (that is `llava-patch bench`).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from .. import apply, method_info, methods
from ..models.loading import VLM, load_model
from ..models.media import read_image
from ..models.tiny import build_tiny_llava, random_image

RATIOS = (0.75, 0.9, 0.95)


def demo_settings(num_patches: int, variable_counts: bool = True) -> list[tuple[str, dict]]:
    """The unpruned model, then every method: at each of RATIOS, or at each of its own budgets below
    `num_patches` (PruMerge+'s 64/128/256 on a 576-patch tower) where the model takes per-image counts."""
    settings: list[tuple[str, dict]] = [("none", {})]
    for name in methods():
        info = method_info(name)
        if info.takes_reduction_ratio:
            settings += [(name, {"reduction_ratio": ratio}) for ratio in RATIOS]
        elif info.budgets and (variable_counts or not info.variable_count):
            settings += [(name, {"keep": keep}) for keep in info.budgets if keep < num_patches]
    return settings


def run_demo(model: str | None, image: str | None, question: str = "Describe the image briefly.",
             max_new_tokens: int = 16, device: str | None = None, backend: str = "hf",
             output: str | None = None) -> list[dict]:
    """Rows of (method, reduction ratio, visual tokens that reached the LLM, seconds, answer); printed as
    they come and, with `output` (a new file), written as JSON lines."""
    if output and Path(output).exists():
        raise FileExistsError(f"--output {output} exists; choose a new file (nothing is overwritten)")
    picture = _image(image)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if model is not None:
        rows = _run(_load(model, backend, device), picture, question, max_new_tokens, device)
    else:
        with tempfile.TemporaryDirectory(prefix="llava-patch-demo-") as scratch:  # removed afterwards
            print("no --model given: a tiny random LLaVA built from configs (LLaVA-1.5's 336-px, 576-patch tower "
                  "geometry on tiny widths); its answers are meaningless")
            tiny = build_tiny_llava(Path(scratch), image_size=336, patch_size=14)
            rows = _run(_load(str(tiny), "hf", device), picture, question, max_new_tokens, device)
    if output:
        with open(output, "x") as file:
            file.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


def _image(path: str | None) -> Image.Image:
    if path is None:
        return random_image(0, size=(336, 448))
    try:
        return read_image(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"--image {error}") from error


def _load(path: str, backend: str, device: str) -> VLM:
    try:
        return load_model(path, backend=backend, device=device)
    except OSError as error:
        raise ValueError(f"--model {path}: cannot load a LLaVA checkpoint from it ({error})") from error


def _run(vlm: VLM, image: Image.Image, question: str, max_new_tokens: int, device: str) -> list[dict]:
    print(f"device={device} dtype={vlm.model.dtype} torch={torch.__version__}; greedy generate, "
          f"max_new_tokens={max_new_tokens}; wall time of one call after one warm-up call")
    with apply(vlm.model, "none") as handle:
        num_patches, variable_counts = handle.adapter.num_patches, handle.adapter.accepts_variable_counts
    rows = []
    for method, budget in demo_settings(num_patches, variable_counts):
        with apply(vlm.model, method, **budget) as handle:
            vlm.generate([image], [question], max_new_tokens)  # warm-up
            _synchronize(device)
            start = time.perf_counter()
            answer = vlm.generate([image], [question], max_new_tokens)[0]
            _synchronize(device)
            row = {"method": method, "reduction_ratio": budget.get("reduction_ratio", 0.0 if not budget else None),
                   "keep": budget.get("keep"), "visual_tokens_to_llm": handle.last_visual_tokens[0],
                   "seconds": round(time.perf_counter() - start, 4), "answer": answer}
        rows.append(row)
        setting = f"keep={row['keep']}" if row["keep"] else f"R={row['reduction_ratio']}"
        print(f"{method:13s} {setting:9s} tokens={row['visual_tokens_to_llm']:4d} "
              f"time={row['seconds']:.3f}s  {row['answer']!r}")
    return rows


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
