"""Paper tables from data: published numbers (`llava_patch/paper/data/published.csv`) beside reproduced ones.

`llava-patch tables` renders one table per (paper, model) in the paper's layout — its methods and
budgets as rows, its benchmarks and average as columns — as Markdown and LaTeX. A cell shows the
published value; where a run reproduced it, "published / reproduced (Δ)", flagged with ⚠ when the
difference exceeds the tolerance (relative to the published value); "·" marks a cell not yet
reproduced, "×" one of a row this project cannot run (its method is not registered). Reproduced
values come from evaluation runs (`metrics.json` + `manifest.json`): a run is matched to a cell by the
published model its manifest names (`paper_model`), method, benchmark record and its token count:

- the "# Token" the run recorded as printed (`printed_tokens`: FastV run with the budget its authors'
  code used, 57 in the row printed 58; SparseVLM and FitPrune, whose printed count is layer-averaged);
- else, for a method whose counts vary per image (PruMerge+), its nominal budget;
- else the visual tokens it measured (the mean, rounded).

A run with `empty_image` (the image prompt with 0 visual tokens, what FasterVLM's code feeds at 100%
reduction) fills the `no_image` row; a text-only `no_image` run fills none (its prompt differs). The
value is the record's headline metric; column titles are the records' display names.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .. import method_info, methods
from ..eval.benchmarks import VIDEO_QA_JUDGE, Benchmark, get_benchmark
from ..eval.files import read_json
from .published import NO_IMAGE, UNPRUNED, benchmark_record, load_published, recompute_average

FLAG, MISSING, UNAVAILABLE = "⚠", "·", "×"
AVERAGE_TITLE = "Average"
PRINTED_TITLES = {("vtc_cls", "sqa"): "SciQA"}  # (paper, record) → the title where a paper prints its own


@dataclass(frozen=True)
class Cell:
    published: float | None
    reproduced: float | None = None

    @property
    def difference(self) -> float | None:
        if self.published is None or self.reproduced is None:
            return None
        return self.reproduced - self.published


def column_title(paper: str, benchmark: str) -> str:
    """The title `paper` prints over its published column `benchmark` (a CSV benchmark name)."""
    record = benchmark_record(benchmark)
    if record is None:
        return AVERAGE_TITLE
    return PRINTED_TITLES.get((paper, record), get_benchmark(record).display)


def reproduced_results(runs_root: str | Path) -> list[dict]:
    """One record per finished evaluation run under `runs_root` that has metrics: its published model
    (None where the checkpoint is none of the papers'), method, benchmark record, tokens and values.
    `runs_root` must be a directory (FileNotFoundError naming it); one without a finished run says so
    in one line on stderr."""
    root = Path(runs_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {'not a directory' if root.exists() else 'no such directory'} "
                                "(the runs: a directory holding evaluation runs)")
    results = []
    for manifest_path in sorted(root.rglob("manifest.json")):
        metrics_path = manifest_path.with_name("metrics.json")
        if not metrics_path.exists():
            continue
        manifest, metrics = read_json(manifest_path), read_json(metrics_path)
        method, tokens = _row_of(manifest)
        results.append({"model": manifest.get("paper_model"), "method": method,
                        "benchmark": manifest["benchmark"], "tokens": tokens,
                        "values": _headline_values(get_benchmark(manifest["benchmark"]), metrics),
                        "run": str(manifest_path.parent)})
    if not results:
        print(f"{root}: no finished evaluation run (manifest.json with metrics.json) under it; "
              "only published numbers are shown", file=sys.stderr)
    return results


def _row_of(manifest: dict) -> tuple[str, int]:
    """The (method, "# Token") of the published row a run's manifest fills (see the module docstring)."""
    if manifest.get("empty_image"):
        return NO_IMAGE, 0
    method = manifest["method"]
    if manifest.get("printed_tokens") is not None:
        return method, int(manifest["printed_tokens"])
    try:
        variable = method_info(method).variable_count  # counts vary per image: the nominal budget
    except ValueError:  # a method this installation does not have
        variable = False
    measured = manifest.get("measured_visual_tokens") or {}
    return method, manifest["requested_budget"]["keep"] if variable else round(measured.get("mean", 0))


def runnable_methods() -> set[str]:
    """The published methods this project can run: the registered ones, and the 0-token row
    (`no_image`: `llava-patch eval --method none --empty-image`)."""
    return set(methods()) | {NO_IMAGE}


def tables_with_runs(runs_root: str | Path | None = None, published_csv: str | Path | None = None,
                     runnable: set[str] | None = None) -> dict:
    """`build_tables` of the published numbers and the runs under `runs_root` (none: published only).
    Finished runs none of which matches a published cell (model, method, benchmark, tokens) are named
    in one line on stderr: the tables then show published numbers only."""
    reproduced = reproduced_results(runs_root) if runs_root else []
    tables = build_tables(load_published(published_csv), reproduced, runnable)
    matched = any(cell.reproduced is not None for table in tables.values() for cell in table["cells"].values())
    if reproduced and not matched:
        print(f"{runs_root}: {len(reproduced)} finished run(s), none of a published model, method, benchmark and "
              "token count; only published numbers are shown", file=sys.stderr)
    return tables


def _headline_values(benchmark: Benchmark, metrics: dict) -> dict[str | None, float]:
    """metric name → value in the papers' units; None → the single number a table prints (the record's
    headline metric; nothing when the metrics lack it)."""
    if benchmark.judge == VIDEO_QA_JUDGE:  # accuracy is a fraction, the tables print percent; and the score
        return {"accuracy": 100 * metrics["accuracy"], "score": metrics["score"]}
    value = metrics.get(benchmark.headline)
    return {} if value is None else {None: value}


def build_tables(published: list[dict], reproduced: list[dict],
                 runnable: set[str] | None = None) -> dict[tuple[str, str], dict]:
    """(paper, model) → {"columns": [(benchmark, metric)], "rows": [(method, tokens, ratio)],
    "cells": {(row, benchmark, metric): Cell}, "runnable": {row: bool}}, in the papers' order. A row is
    runnable when its method is in `runnable` (default `runnable_methods()`: what this installation
    can run). Rows without a token budget (VTC-CLS's reference rows of other models) are not part of a
    pruning table."""
    runnable = runnable_methods() if runnable is None else set(runnable)
    tables: dict[tuple[str, str], dict] = {}
    for row in published:
        if row["tokens"] is None:
            continue
        table = tables.setdefault((row["paper"], row["model"]), {"columns": [], "rows": [], "cells": {}})
        key = (row["method"], int(row["tokens"]), row["reduction_ratio"])
        if (row["benchmark"], row["metric"]) not in table["columns"]:
            table["columns"].append((row["benchmark"], row["metric"]))
        if key not in table["rows"]:
            table["rows"].append(key)
            table.setdefault("runnable", {})[key] = row["method"] in runnable
        table["cells"][(key, row["benchmark"], row["metric"])] = Cell(row["value"])
    for (paper, model), table in tables.items():
        _add_reproduced(paper, model, table, reproduced)
    return tables


def _add_reproduced(paper: str, model: str, table: dict, reproduced: list[dict]) -> None:
    values: dict[tuple, float] = {}
    columns = {benchmark_record(benchmark): benchmark for benchmark, _ in table["columns"]}  # record → column
    for result in reproduced:
        benchmark = columns.get(result["benchmark"])
        if benchmark is None:
            continue
        for key in table["rows"]:
            if result["model"] == model and key[0] == result["method"] and key[1] == result["tokens"]:
                for metric, value in result["values"].items():
                    values[(key, benchmark, metric)] = value
    for (key, benchmark, metric), cell in list(table["cells"].items()):
        value = values.get((key, benchmark, metric), values.get((key, benchmark, None)))
        if value is not None:
            table["cells"][(key, benchmark, metric)] = Cell(cell.published, value)
    single = {(key, benchmark): value for (key, benchmark, metric), value in values.items() if metric is None}
    unpruned = next((key for key in table["rows"] if key[0] == UNPRUNED), None)
    for key in table["rows"]:  # a reproduced average needs every benchmark of the row and of the unpruned row
        rows = [{"paper": paper, "model": model, "method": row_key[0], "reduction_ratio": row_key[2],
                 "benchmark": benchmark, "value": value}
                for (row_key, benchmark), value in single.items() if row_key in (key, unpruned)]
        try:
            average = recompute_average(rows, paper, model, key[0], key[2])
        except (KeyError, ValueError, ZeroDivisionError):
            continue
        for (row_key, benchmark, metric), cell in list(table["cells"].items()):
            if row_key == key and benchmark == "average":
                table["cells"][(row_key, benchmark, metric)] = Cell(cell.published, average)


def _format(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _cell_text(cell: Cell, tolerance: float, runnable: bool = True) -> str:
    if cell.reproduced is None:
        return f"{_format(cell.published)} {MISSING if runnable else UNAVAILABLE}"
    flag = f" {FLAG}" if cell.published and abs(cell.difference) > tolerance * abs(cell.published) else ""
    return f"{_format(cell.published)} / {_format(cell.reproduced)} ({cell.difference:+.2f}){flag}"


def _grid(paper: str, table: dict, tolerance: float) -> tuple[list[str], list[list[str]]]:
    benchmarks = [benchmark for benchmark, _ in table["columns"]]
    header = ["Method", "Reduction", "# Token"] + [
        column_title(paper, benchmark) + (f" {metric}" if benchmarks.count(benchmark) > 1 else "")
        for benchmark, metric in table["columns"]]
    lines = []
    for key in table["rows"]:
        method, tokens, ratio = key
        cells = []
        for benchmark, metric in table["columns"]:
            cell = table["cells"].get((key, benchmark, metric))
            cells.append("" if cell is None else _cell_text(cell, tolerance, table.get("runnable", {}).get(key, True)))
        lines.append([method, f"{ratio:.0%}", str(tokens)] + cells)
    return header, lines


def render_markdown(paper: str, model: str, table: dict, tolerance: float = 0.015) -> str:
    header, lines = _grid(paper, table, tolerance)
    out = [f"### {paper} — {model}", "",
           f"Published value; `published / reproduced (Δ)` where reproduced ({FLAG}: |Δ| > {tolerance:.1%} of the "
           f"published value); {MISSING}: not reproduced yet{_unavailable_legend(table)}.", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def _unavailable_legend(table: dict) -> str:
    missing = sorted({key[0] for key, runnable in table.get("runnable", {}).items() if not runnable})
    return f"; {UNAVAILABLE}: not runnable here ({', '.join(missing)}: no such method registered)" if missing else ""


def render_latex(paper: str, model: str, table: dict, tolerance: float = 0.015) -> str:
    header, lines = _grid(paper, table, tolerance)

    def escape(text: str) -> str:
        return (text.replace("\\", r"\textbackslash{}").replace("%", r"\%").replace("#", r"\#").replace("_", r"\_")
                .replace(FLAG, r"$^\dagger$").replace(MISSING, r"$\cdot$").replace(UNAVAILABLE, r"$\times$")
                .replace("Δ", r"$\Delta$"))

    out = [r"% " + f"{paper} — {model}: published / reproduced (difference); $^\\dagger$: outside tolerance",
           r"\begin{tabular}{" + "l" * 3 + "c" * (len(header) - 3) + "}", r"\toprule",
           " & ".join(escape(h) for h in header) + r" \\", r"\midrule"]
    out += [" & ".join(escape(cell) for cell in line) + r" \\" for line in lines]
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def write_tables(output: str | Path, runs_root: str | Path | None = None, published_csv: str | Path | None = None,
                 tolerance: float = 0.015, runnable: set[str] | None = None) -> list[Path]:
    """Render every (paper, model) table as `<paper>_<model>.md` and `.tex` under `output`, with the
    reproduced values of the runs under `runs_root` (see `tables_with_runs`)."""
    tables = tables_with_runs(runs_root, published_csv, runnable)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for (paper, model), table in tables.items():
        for suffix, render in ((".md", render_markdown), (".tex", render_latex)):
            path = output / f"{paper}_{model}{suffix}"
            path.write_text(render(paper, model, table, tolerance), encoding="utf-8")
            written.append(path)
    return written
