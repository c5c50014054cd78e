"""A sweep: every method × reduction ratio × benchmark through the runner, then one results table
(CSV + Markdown) and a retention figure (headline metric vs % of visual tokens pruned, the unpruned
model as a horizontal line). Finished runs are skipped, so a stopped sweep resumes where it stopped.

    python -m llava_patch.eval.sweep                   # `make reproduce`: mini benchmark + tiny model
    CKPT=... DATA=playground/data/eval python -m llava_patch.eval.sweep --benchmarks pope gqa   # real sweep
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

from .runner import ANSWERS, MANIFEST, METRICS, RunConfig, run

METHODS = ("none", "fastervlm", "vtc_cls", "fastv", "random", "grid")
RATIOS = (0.75, 0.9, 0.95)
HEADLINE = {"pope": "f1_mean", "gqa": "accuracy"}  # the number a paper table prints for each benchmark


def sweep(model: str, data_root: Path, output_root: Path, benchmarks: list[str], methods=METHODS, ratios=RATIOS,
          backend: str = "llava", batch_size: int = 8, dtype: str | None = None, limit: int | None = None) -> list[dict]:
    rows = []
    for benchmark in benchmarks:
        for method in methods:
            for ratio in ([0.0] if method == "none" else ratios):
                output = output_root / benchmark / f"{method}-{ratio:g}"
                if not (output / ANSWERS).exists():
                    run(RunConfig(model=model, benchmark=benchmark, data_root=str(data_root), output_dir=str(output),
                                  backend=backend, method=method, reduction_ratio=None if method == "none" else ratio,
                                  batch_size=batch_size, dtype=dtype, limit=limit))
                rows.append(_row(benchmark, method, ratio, output))
    _write_tables(rows, output_root)
    _plot(rows, output_root / "retention")
    return rows


def _row(benchmark: str, method: str, ratio: float, output: Path) -> dict:
    metrics = json.loads((output / METRICS).read_text()) if (output / METRICS).exists() else {}
    manifest = json.loads((output / MANIFEST).read_text())
    tokens = manifest["measured_visual_tokens"] or {}
    metric = HEADLINE.get(benchmark)
    return {"benchmark": benchmark, "method": method, "reduction_ratio": ratio, "metric": metric,
            "value": metrics.get(metric), "visual_tokens_mean": tokens.get("mean"), "run": str(output)}


def _write_tables(rows: list[dict], output_root: Path) -> None:
    with open(output_root / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| benchmark | method | pruned | visual tokens (mean) | metric | value |", "|---|---|---|---|---|---|"]
    for row in rows:
        value = "—" if row["value"] is None else f"{row['value']:.4g}"
        lines.append(f"| {row['benchmark']} | {row['method']} | {row['reduction_ratio']:.0%} | "
                     f"{row['visual_tokens_mean']:.1f} | {row['metric']} | {value} |")
    (output_root / "results.md").write_text("\n".join(lines) + "\n")


def _plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    from ..plotting import save_figure

    benchmarks = sorted({row["benchmark"] for row in rows})
    figure = Figure(figsize=(4.5 * len(benchmarks), 3.5))
    axes = figure.subplots(1, len(benchmarks), squeeze=False)
    for axis, benchmark in zip(axes[0], benchmarks):
        subset = [row for row in rows if row["benchmark"] == benchmark and row["value"] is not None]
        for method in dict.fromkeys(row["method"] for row in subset):
            points = sorted((100 * row["reduction_ratio"], row["value"]) for row in subset if row["method"] == method)
            if method == "none":
                axis.axhline(points[0][1], color="black", linestyle="--", label="unpruned")
            else:
                axis.plot(*zip(*points), marker="o", label=method)
        axis.set(title=benchmark, xlabel="visual tokens pruned (%)", ylabel=HEADLINE.get(benchmark, "metric"))
        axis.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("CKPT"), help="checkpoint (default $CKPT; none: a tiny random model)")
    parser.add_argument("--data-root", default=os.environ.get("DATA"), help="LLaVA's playground/data/eval (default $DATA; none: the mini benchmark)")
    parser.add_argument("--backend", default=os.environ.get("BACKEND", "llava"), choices=("llava", "hf"))
    parser.add_argument("--output-root", default="runs/reproduce")
    parser.add_argument("--benchmarks", nargs="+", default=["pope", "gqa"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--ratios", nargs="+", type=float, default=list(RATIOS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    output_root = Path(args.output_root)
    model, data_root, dtype = args.model, args.data_root, None
    if model is None or data_root is None:
        output_root = output_root / "mini"
        model, data_root = _embedded_default(output_root)
        dtype = "float32"
        print(f"CKPT/DATA not set: tiny random model and the mini benchmark under {output_root} "
              "(the numbers exercise the pipeline; they mean nothing about the papers)")
    output_root.mkdir(parents=True, exist_ok=True)
    sweep(model, Path(data_root), output_root, args.benchmarks, args.methods, args.ratios, args.backend,
          args.batch_size, dtype, args.limit)
    print((output_root / "results.md").read_text())
    print(f"wrote {output_root / 'results.csv'}, {output_root / 'results.md'}, {output_root / 'retention.png'} (.pdf)")


def _embedded_default(root: Path) -> tuple[str, str]:
    from ..models.tiny import build_tiny_llava_original
    from .minibench import build_minibench

    model, data = root / "model" / "llava-v1.5-tiny", root / "data"
    if not model.exists():
        build_tiny_llava_original(root / "model")
    if not data.exists():
        build_minibench(data, images=12)
    return str(model), str(data)


if __name__ == "__main__":
    main()
