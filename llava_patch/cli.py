"""`llava-patch` command line.

    llava-patch eval --model CKPT --benchmark pope --data-root playground/data/eval \
        --method fastervlm --reduction-ratio 0.95 --output-dir runs/pope-fastervlm-95   # also: accelerate launch -m llava_patch.eval
    llava-patch score pope --answers runs/.../answers.jsonl --data-root playground/data/eval
    llava-patch tables  [--runs runs] [--output paper_tables]   # published tables, reproduced values beside them
    llava-patch figures [--runs runs] [--output figures]        # retention curves (published + reproduced)
    llava-patch cost --model llava-1.5-7b --method fastervlm --reduction-ratio 0.95 --text-tokens 60 --new-tokens 16
    llava-patch bench [--device cuda] [--output experiments/efficiency/<name>]   # latency/memory vs the reference approach
    llava-patch convert --to hf    ORIGINAL_DIR OUT_DIR   # original LLaVA layout → transformers llava-hf layout
    llava-patch convert --to llava HF_DIR OUT_DIR         # and back
    llava-patch compare DIR_A DIR_B [--atol 0]            # same model? (either layout; exit 1 if not)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llava-patch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert a LLaVA-1.5 checkpoint between the original and llava-hf layouts")
    convert.add_argument("--to", choices=("hf", "llava"), required=True, help="target layout")
    convert.add_argument("source")
    convert.add_argument("destination", help="a new (or empty) directory; nothing is overwritten")
    compare = commands.add_parser("compare", help="compare two checkpoints tensor by tensor (either layout)")
    compare.add_argument("first")
    compare.add_argument("second")
    compare.add_argument("--atol", type=float, default=0.0, help="largest absolute difference still counted as equal")
    evaluate = commands.add_parser("eval", help="answer a benchmark with a (pruned) model, resumably; score it")
    evaluate.add_argument("--model", required=True, help="checkpoint directory or hub id")
    evaluate.add_argument("--backend", choices=("llava", "hf"), default="llava")
    evaluate.add_argument("--benchmark", required=True)
    evaluate.add_argument("--data-root", required=True, help="LLaVA's playground/data/eval directory")
    evaluate.add_argument("--output-dir", required=True, help="a new directory, or a stopped run of the same settings to resume")
    evaluate.add_argument("--method", default="none")
    budget = evaluate.add_mutually_exclusive_group()
    budget.add_argument("--keep", type=int)
    budget.add_argument("--reduction-ratio", type=float)
    evaluate.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                          help="a method or model option, e.g. --option layers=3 --option mode=paper (JSON values)")
    evaluate.add_argument("--batch-size", type=int, default=1)
    evaluate.add_argument("--limit", type=int, help="only the first N questions (smoke runs)")
    evaluate.add_argument("--dtype", choices=("float16", "bfloat16", "float32"))
    tables = commands.add_parser("tables", help="render the papers' tables (Markdown + LaTeX) with reproduced values")
    tables.add_argument("--runs", help="a directory holding evaluation runs (metrics.json + manifest.json)")
    tables.add_argument("--output", default="paper_tables")
    tables.add_argument("--tolerance", type=float, default=0.015, help="flag |Δ| above this fraction of the published value")
    figures = commands.add_parser("figures", help="retention curves from published and reproduced numbers")
    figures.add_argument("--runs", help="a directory holding evaluation runs")
    figures.add_argument("--output", default="figures")
    figures.add_argument("--model", help="also the attention figures, on this transformers LLaVA checkpoint")
    figures.add_argument("--samples", help="with --model: samples in LLaVA's instruction format (JSON list, e.g. "
                                           "a 1 000-sample subset of llava_v1_5_mix665k.json)")
    figures.add_argument("--image-root", help="with --model: the directory the samples' image paths are relative to")
    figures.add_argument("--limit", type=int, help="with --model: the first N samples only")
    cost = commands.add_parser("cost", help="MACs/FLOPs per component and KV-cache bytes (cost model)")
    cost.add_argument("--model", default="llava-1.5-7b", help="llava-1.5-7b, llava-1.5-13b, llava-next-7b, video-llava-7b")
    cost.add_argument("--method", default="none")
    cost_budget = cost.add_mutually_exclusive_group()
    cost_budget.add_argument("--keep", type=int)
    cost_budget.add_argument("--reduction-ratio", type=float)
    cost.add_argument("--text-tokens", type=int, default=1)
    cost.add_argument("--new-tokens", type=int, default=0)
    cost.add_argument("--fastv-layer", type=int, default=2)
    score = commands.add_parser("score", help="print a benchmark's metrics for an answers file as JSON")
    score.add_argument("benchmark")
    score.add_argument("--answers", required=True)
    score.add_argument("--data-root", required=True)
    score.add_argument("--submission", help="for server-scored benchmarks (vqav2, vizwiz, mmbench(_cn) test, mmvet): "
                                            "write the upload file here (a new file)")
    commands.add_parser("bench", help="latency/memory benchmark vs the reference approach (see `llava-patch bench -h`)",
                        add_help=False)
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["bench"]:  # its own parser: python -m llava_patch.efficiency.bench takes the same arguments
        from .efficiency.bench import main as bench_main

        bench_main(argv[1:])
        return 0
    args = parser.parse_args(argv)

    from .models import convert as conversion

    try:
        if args.command == "eval":
            from .eval.runner import RunConfig, run

            manifest = run(RunConfig(
                model=args.model, benchmark=args.benchmark, data_root=args.data_root, output_dir=args.output_dir,
                backend=args.backend, method=args.method, options=_options(args.option), keep=args.keep,
                reduction_ratio=args.reduction_ratio, batch_size=args.batch_size, limit=args.limit, dtype=args.dtype,
            ))
            if manifest:
                print(json.dumps(manifest, indent=2))
            return 0
        if args.command == "score":
            from .eval.runner import score_answers
            from .eval.scoring import write_submission

            if args.submission:
                print(f"wrote {write_submission(args.benchmark, args.answers, args.data_root, args.submission)}")
                return 0
            metrics = score_answers(args.benchmark, args.answers, args.data_root)
            if metrics is None:
                raise ValueError(f"{args.benchmark} is scored by its server: pass --submission FILE for its upload file")
            print(json.dumps(metrics, indent=2))
            return 0
        if args.command == "cost":
            from .efficiency.cost import MODELS, estimate

            if args.model not in MODELS:
                raise ValueError(f"--model {args.model!r}; known: {', '.join(MODELS)}")
            result = estimate(args.model, args.method, keep=args.keep, reduction_ratio=args.reduction_ratio,
                              text_tokens=args.text_tokens, new_tokens=args.new_tokens, fastv_layer=args.fastv_layer)
            result.pop("spec")
            print(json.dumps(result, indent=2))
            return 0
        if args.command == "tables":
            from .paper.tables import write_tables

            for path in write_tables(args.output, args.runs, tolerance=args.tolerance):
                print(f"wrote {path}")
            return 0
        if args.command == "figures":
            from .paper.figures import write_attention_figures, write_figures

            paths = write_figures(args.output, args.runs)
            if args.model:
                if not args.samples:
                    raise ValueError("--model needs --samples (LLaVA instruction-format JSON)")
                from .models.loading import read_config

                samples = read_config(Path(args.samples))[: args.limit]
                paths += write_attention_figures(args.model, samples, args.output, args.image_root)
            for path in paths:
                print(f"wrote {path}")
            return 0
        if args.command == "convert":
            target = conversion.original_to_hf if args.to == "hf" else conversion.hf_to_original
            print(f"wrote {target(args.source, args.destination)}")
            return 0
        report = conversion.compare_checkpoints(args.first, args.second, atol=args.atol)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"llava-patch {args.command}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if report["same_model"] else 1


def _options(pairs: list[str]) -> dict:
    """NAME=VALUE pairs; values are JSON when they parse (3, true, "x"), else strings."""
    options = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"--option {pair!r}: expected NAME=VALUE")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


if __name__ == "__main__":
    sys.exit(main())
