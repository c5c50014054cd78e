"""What stopping the vision tower at LLaVA's select layer saves (CLIP ViT-L/14-336, random weights).

LLaVA-1.5 feeds hidden_states[-2] (the output of encoder layer 22 of 24) to the projector, so layer 23
is computed and thrown away by the original code. Times `llava_patch.tower.encode_and_select` with
and without `stop_at_select_layer`, and the plain transformers tower call LLaVA makes, as medians of
wall-clock repeats after warm-up (CUDA-synchronised on GPU). Writes one JSON file.

    python experiments/efficiency/tower_truncation.py --output experiments/efficiency/tower_truncation_cpu.json
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from llava_patch.methods.fastervlm import FasterVLM
from llava_patch.tower import encode_and_select

CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")


def median_seconds(function, repeats: int, warmup: int, cuda: bool) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if Path(args.output).exists():
        raise SystemExit(f"--output {args.output} exists; nothing is overwritten")
    cuda = args.device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32
    torch.manual_seed(0)
    tower = CLIPVisionModel(CLIPVisionConfig(**CLIP_L_336)).to(args.device, dtype).eval()
    pixels = torch.randn(args.batch_size, 3, 336, 336, device=args.device, dtype=dtype)
    selector = FasterVLM()
    calls = {
        "transformers_tower_hidden_states": lambda: tower(pixels, output_hidden_states=True).hidden_states[-2],
        "select_full_tower": lambda: encode_and_select(tower, pixels, selector, 29, 22, stop_at_select_layer=False),
        "select_stop_at_layer_22": lambda: encode_and_select(tower, pixels, selector, 29, 22, stop_at_select_layer=True),
    }
    with torch.inference_mode():
        seconds = {name: median_seconds(call, args.repeats, args.warmup, cuda) for name, call in calls.items()}
    result = {
        "what": "median wall-clock seconds per batch; CLIP ViT-L/14-336 architecture, random weights, sdpa",
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({platform.processor() or platform.machine()}, "
                                                             f"{torch.get_num_threads()} threads)",
        "dtype": str(dtype), "batch_size": args.batch_size, "repeats": args.repeats, "warmup": args.warmup,
        "torch": torch.__version__, "seconds": seconds,
        "saving_from_stopping": 1 - seconds["select_stop_at_layer_22"] / seconds["select_full_tower"],
        "selection_overhead_vs_transformers_tower": seconds["select_full_tower"] / seconds["transformers_tower_hidden_states"] - 1,
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
