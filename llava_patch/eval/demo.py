"""Run every selection method on one image and show what reaches the language model.

    python -m llava_patch.eval.demo --model llava-hf/llava-1.5-7b-hf --image photo.jpg
    python -m llava_patch.eval.demo            # no checkpoint: a tiny random model (meaningless answers)

Each row is one `generate` call (greedy) timed end to end with wall-clock time after one warm-up
call, on the device and dtype printed in the header: a smoke test, not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from .. import apply
from ..models.media import read_image
from ..models.tiny import build_tiny_llava, random_image

RATIOS = (0.75, 0.9, 0.95)
METHODS = ("fastervlm", "vtc_cls", "fastv", "random", "grid")


def load_image(path: str | None) -> Image.Image:
    if path is None:
        return random_image(0, size=(336, 448))
    try:
        return read_image(path)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--image {error}") from error


def load_model(path: str | None, device: str):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    if path is None:
        path = build_tiny_llava(Path(tempfile.mkdtemp(prefix="llava-patch-demo-")))
        print(f"no --model given: built a tiny random LLaVA at {path}; its answers are meaningless")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        model = LlavaForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device).eval()
        processor = AutoProcessor.from_pretrained(path)
    except OSError as error:
        raise SystemExit(f"--model {path}: cannot load a LLaVA checkpoint from it ({error})") from error
    return model, processor


def run(model, processor, image: Image.Image, question: str, max_new_tokens: int) -> dict:
    text = f"USER: <image>\n{question} ASSISTANT:"
    inputs = processor(images=image, text=text, return_tensors="pt").to(model.device)
    options = dict(max_new_tokens=max_new_tokens, do_sample=False)
    model.generate(**inputs, **options)  # warm-up
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    output = model.generate(**inputs, **options)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    answer = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    return {"seconds": round(seconds, 4), "answer": answer.strip()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="local directory or hub id of a transformers LLaVA-1.5 checkpoint")
    parser.add_argument("--image", help="image file (default: a synthetic image)")
    parser.add_argument("--question", default="Describe the image briefly.")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", help="also write the rows as JSON lines to this new file")
    args = parser.parse_args(argv)
    if args.output and Path(args.output).exists():
        raise SystemExit(f"--output {args.output} exists; choose a new file (nothing is overwritten)")

    image = load_image(args.image)
    model, processor = load_model(args.model, args.device)
    print(f"device={args.device} dtype={model.dtype} torch={torch.__version__}; greedy generate, "
          f"max_new_tokens={args.max_new_tokens}; wall time of one call after one warm-up call")
    settings = [("none", {})] + [(m, {"reduction_ratio": r}) for m in METHODS for r in RATIOS]
    rows = []
    for method, budget in settings:
        with apply(model, method, **budget) as handle:
            result = run(model, processor, image, args.question, args.max_new_tokens)
            row = {"method": method, "reduction_ratio": budget.get("reduction_ratio", 0.0),
                   "visual_tokens_to_llm": handle.last_visual_tokens[0], **result}
        rows.append(row)
        print(f"{method:10s} R={row['reduction_ratio']:<5} tokens={row['visual_tokens_to_llm']:4d} "
              f"time={row['seconds']:.3f}s  {row['answer']!r}")
    if args.output:
        with open(args.output, "x") as file:
            file.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
