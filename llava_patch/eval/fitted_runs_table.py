"""A table of runs whose method used a file fitted on calibration data (FitPrune's recipe, SparseVLM's
settings), as `experiments/toy/in_llm_baselines.sh` writes it:

    python -m llava_patch.eval.fitted_runs_table --data-root DATA --output DIR < runs.tsv

One row per run named on stdin (tab-separated: benchmark, method, reduction ratio, run folder, note),
each headline with the sweep's 95% bootstrap interval (`sweep.run_row`: the same metric, interval and
measured tokens as `make reproduce`), the printed and measured (final and layer-mean) visual tokens,
what was fitted, and % of the unpruned row. Writes DIR/results.csv and DIR/results.md (the table is
rewritten; no run is touched)."""

import argparse
import sys
from pathlib import Path

from .files import read_json, write_atomic
from .runner import MANIFEST
from .sweep import add_percent_of_unpruned, run_row, value_cells, write_csv


def fitted(manifest: dict) -> str:
    """What the run's fitted file says, in a few words (empty for the unpruned model)."""
    options = manifest.get("options") or {}
    if "recipe" in options:
        recipe = read_json(options["recipe"])
        reached = "reached" if recipe["fitting"]["reached"] else "NOT reached"
        return (f"recipe {Path(options['recipe']).name}: FLOPs −{100 * recipe['flops_reduction_forecast']:.1f}% "
                f"(target {100 * recipe['flops_reduction_target']:g}%, {reached}), "
                f"{recipe['calibration']['samples']} questions")
    if "settings" in options:
        settings = read_json(options["settings"])
        reached = "reached" if settings["reached"] else "not within tolerance"
        return (f"settings {Path(options['settings']).name}: scale {settings['scale']:.4g}, bias {settings['bias']:g}: "
                f"{settings['mean_layer_visual_tokens']:.2f} layer mean on {settings['calibration']['samples']} "
                f"questions ({reached})")
    if "scale" in options:
        return f"scale {options['scale']:g}, bias {options.get('bias', 0):g} (by hand)"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="the evaluation data (the sweep's sample)")
    parser.add_argument("--output", required=True, help="folder for results.csv and results.md")
    args = parser.parse_args()
    rows = []
    for line in sys.stdin.read().splitlines():
        if not line.strip():
            continue
        benchmark, method, ratio, run, note = (line.split("\t") + [""])[:5]
        row = run_row(benchmark, method, float(ratio), Path(run), Path(args.data_root), partial=False)
        manifest = read_json(Path(run) / MANIFEST)
        layer_mean = (manifest.get("measured_equivalent_visual_tokens") or {}).get("mean")
        rows.append({"benchmark": benchmark, "method": method, "reduction_ratio": float(ratio),
                     "printed_tokens": manifest.get("printed_tokens"), "fitted": fitted(manifest),
                     "final_visual_tokens_mean": row["visual_tokens_mean"],
                     # the unpruned model: every layer sees every token
                     "layer_mean_visual_tokens_mean": layer_mean if layer_mean is not None else row["visual_tokens_mean"],
                     "questions": row["questions"], "metric": row["metric"], "value": row["value"],
                     "ci95_low": row["ci95_low"], "ci95_high": row["ci95_high"], "note": note, "run": run})
    add_percent_of_unpruned(rows, lambda row: row["method"] == "none")
    output = Path(args.output)
    write_csv(rows, output / "results.csv")
    lines = ["| benchmark | method | pruned | tokens (printed) | visual tokens: final / layer mean (measured) | "
             "questions | metric | value [95% CI] | % of unpruned | fitted |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        value, share = value_cells(row)
        printed = "—" if row["printed_tokens"] is None else str(row["printed_tokens"])
        what = "; ".join(part for part in (row["fitted"], row["note"]) if part)
        lines.append(f"| {row['benchmark']} | {row['method']} | {row['reduction_ratio']:.0%} | {printed} | "
                     f"{row['final_visual_tokens_mean']:.1f} / {row['layer_mean_visual_tokens_mean']:.1f} | "
                     f"{row['questions']} | {row['metric']} | {value} | {share} | {what} |")
    lines += ["", "Value: the benchmark's headline metric (percent); in brackets its 95% bootstrap interval over the "
              "questions (1 000 resamples, as `make reproduce`). Visual tokens, measured per sample: final = what "
              "reaches the last decoder layer, layer mean = the mean over the 30 decoder layers of what each layer "
              "processed (FitPrune) or kept after its pruning (SparseVLM; the count its budget names). Printed: "
              "the budget asked for (FitPrune: round(256·(1−R)) of its FLOPs-reduction target R; SparseVLM: the "
              "layer mean its scale was calibrated to)."]
    write_atomic(output / "results.md", "\n".join(lines) + "\n")
    print((output / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
