"""A sweep: every method × reduction ratio × benchmark through the runner, then one results table
(CSV + Markdown) and a retention figure (each benchmark's headline metric vs % of visual tokens
pruned, the unpruned model as a horizontal line). Finished runs are skipped, so a stopped sweep
resumes where it stopped. `llava-patch reproduce` (`make reproduce`) calls `reproduce`: without a
checkpoint or data root, a tiny random model on the bundled mini benchmark.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .. import method_info, methods as registered_methods
from .benchmarks import get_benchmark
from .files import read_json, write_atomic
from .runner import MANIFEST, METRICS, RunConfig, run

RATIOS = (0.75, 0.9, 0.95)
BENCHMARKS = ("pope", "gqa")  # what the embedded default has questions for


def default_methods() -> list[str]:
    """The unpruned method(s), then every registered method that takes a reduction ratio."""
    infos = [method_info(name) for name in registered_methods()]
    return [info.name for info in sorted(infos, key=lambda info: (info.takes_budget, info.name))
            if not info.takes_budget or info.takes_reduction_ratio]


def reproduce(model: str | None = None, data_root: str | Path | None = None,
              output_root: str | Path = "runs/reproduce", benchmarks: list[str] | tuple[str, ...] = BENCHMARKS,
              methods: list[str] | None = None, ratios: list[float] | tuple[float, ...] = RATIOS,
              backend: str = "llava", batch_size: int = 8, limit: int | None = None,
              threads: int | None = None) -> list[dict]:
    """The sweep of `methods` (default: `default_methods()`) × `ratios` × `benchmarks` with its table
    and figure under `output_root`. Without `model` or `data_root`: a tiny random model and the mini
    benchmark, under `output_root`/mini, in float32 (the numbers exercise the pipeline only).

    threads: torch's intra-op CPU threads (default: torch's choice, and 1 for the tiny model, whose
    matrices are too small to share: on a 2-core host one thread ran the default sweep 7.5× faster
    under load, 76 s against 571 s)."""
    import torch

    output_root, dtype = Path(output_root), None
    if (model is None) != (data_root is None):
        given, missing = ("CKPT/--model", "DATA/--data-root") if model is not None else ("DATA/--data-root", "CKPT/--model")
        raise ValueError(f"{given} is set but {missing} is not: set both for a real sweep, neither for the bundled "
                         "tiny model and mini benchmark")
    if model is None:
        output_root = output_root / "mini"
        model, data_root = _embedded_default(output_root)
        dtype, threads = "float32", threads or 1
        print(f"CKPT/DATA not set: tiny random model and the mini benchmark under {output_root} "
              "(the numbers exercise the pipeline; they mean nothing about the papers)")
    if threads is not None:
        torch.set_num_threads(threads)
    output_root.mkdir(parents=True, exist_ok=True)
    rows = sweep(str(model), Path(data_root), output_root, list(benchmarks), methods or default_methods(), ratios,
                 backend, batch_size, dtype, limit)
    print((output_root / "results.md").read_text())
    print(f"wrote {output_root / 'results.csv'}, {output_root / 'results.md'}, {output_root / 'retention.png'} (.pdf)")
    return rows


def sweep(model: str, data_root: Path, output_root: Path, benchmarks: list[str], methods=None, ratios=RATIOS,
          backend: str = "llava", batch_size: int = 8, dtype: str | None = None, limit: int | None = None) -> list[dict]:
    methods = default_methods() if methods is None else methods
    for method in methods:
        info = method_info(method)
        if info.takes_budget and not info.takes_reduction_ratio:
            raise ValueError(f"method {method!r} takes keep = {', '.join(map(str, info.budgets))} only; "
                             "the sweep runs reduction ratios")
    settings = [(benchmark, method, ratio) for benchmark in benchmarks for method in methods
                for ratio in (ratios if method_info(method).takes_budget else [0.0])]
    rows = []
    for number, (benchmark, method, ratio) in enumerate(settings, start=1):
        output = output_root / benchmark / f"{method}-{ratio:g}"
        run(RunConfig(model=model, benchmark=benchmark, data_root=str(data_root), output_dir=str(output),
                      backend=backend, method=method, reduction_ratio=ratio if method_info(method).takes_budget else None,
                      batch_size=batch_size, dtype=dtype, limit=limit), label=f"run {number}/{len(settings)}")
        rows.append(_row(benchmark, method, ratio, output))
    _write_tables(rows, output_root)
    _plot(rows, output_root / "retention")
    return rows


def _row(benchmark: str, method: str, ratio: float, output: Path) -> dict:
    metrics = read_json(output / METRICS) if (output / METRICS).exists() else {}
    manifest = read_json(output / MANIFEST)
    tokens = manifest["measured_visual_tokens"] or {}
    metric = get_benchmark(benchmark).headline
    return {"benchmark": benchmark, "method": method, "reduction_ratio": ratio, "metric": metric,
            "value": metrics.get(metric), "visual_tokens_mean": tokens.get("mean"), "run": str(output)}


def _write_tables(rows: list[dict], output_root: Path) -> None:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(output_root / "results.csv", table.getvalue())
    lines = ["| benchmark | method | pruned | visual tokens (mean) | metric | value |", "|---|---|---|---|---|---|"]
    for row in rows:
        value = "—" if row["value"] is None else f"{row['value']:.4g}"
        lines.append(f"| {row['benchmark']} | {row['method']} | {row['reduction_ratio']:.0%} | "
                     f"{row['visual_tokens_mean']:.1f} | {row['metric']} | {value} |")
    write_atomic(output_root / "results.md", "\n".join(lines) + "\n")


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
            if not method_info(method).takes_budget:
                axis.axhline(points[0][1], color="black", linestyle="--", label="unpruned")
            else:
                axis.plot(*zip(*points), marker="o", label=method)
        record = get_benchmark(benchmark)
        axis.set(title=record.display, xlabel="visual tokens pruned (%)", ylabel=record.headline)
        axis.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)


def _embedded_default(root: Path) -> tuple[str, str]:
    from ..models.tiny import build_tiny_llava_original
    from .minibench import build_minibench

    model, data = root / "model" / "llava-v1.5-tiny", root / "data"
    if not model.exists():
        build_tiny_llava_original(root / "model")
    if not data.exists():
        build_minibench(data, images=12)
    return str(model), str(data)
