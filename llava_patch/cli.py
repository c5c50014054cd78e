"""`llava-patch` command line: one table of subcommands (`COMMANDS`), each an argument builder and a
runner. Heavy modules are imported by the runners, so `--help` stays fast.

    llava-patch demo    [--model CKPT] [--image FILE]          # every method on one image
    llava-patch reproduce                                      # the sweep: methods × 75/90/95% (default: the toy LLaVA)
    llava-patch eval --model CKPT --benchmark pope --data-root playground/data/eval \
        --method fastervlm --reduction-ratio 0.95 --output-dir runs/pope-fastervlm-95   # also: python -m llava_patch.eval
    llava-patch score pope --answers runs/.../answers.jsonl --data-root playground/data/eval
    llava-patch methods                                        # the registered methods and what they declare
    llava-patch tables  [--runs runs] [--output paper_tables]  # published tables, reproduced values beside them
    llava-patch figures [--runs runs] [--output figures]       # retention curves; attention figures (default: toy, 4 photos)
    llava-patch cost --model llava-1.5-7b --method fastervlm --reduction-ratio 0.95 --text-tokens 60 --new-tokens 16
    llava-patch bench --output experiments/efficiency/<name>   # latency/memory vs the reference approach
    llava-patch bench --toy --output experiments/efficiency/toy-cpu   # the trained toy: every method at 95% vs unpruned
    llava-patch convert --to hf ORIGINAL_DIR OUT_DIR           # original LLaVA layout ↔ transformers llava-hf layout
    llava-patch compare DIR_A DIR_B [--atol 0]                 # same model? (either layout; exit 1 if not)
    llava-patch train-toy [--output runs/toy-training]         # train the toy LLaVA's projector (CPU, ~37 min)
    llava-patch fitprune-recipe --model CKPT --data Q.jsonl --image-folder DIR --reduction-ratio 0.9 --output R.json
    llava-patch sparsevlm-calibrate --model CKPT --data Q.jsonl --image-folder DIR --keep 432 --output S.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

from .eval import command as eval_command
from .eval.command import MethodNames, add_budget, benchmark_names, run_reporting_errors


# demo ---------------------------------------------------------------------------------------------
def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint directory or hub id (default: the toy LLaVA, trained on easy-VQA)")
    parser.add_argument("--backend", choices=("hf", "llava"), default="hf")
    parser.add_argument("--image", help="image file (default: an easy-VQA test image)")
    parser.add_argument("--question", help="default: the easy-VQA image's own question, or with --image "
                                           "'Describe the image briefly.'")
    parser.add_argument("--max-new-tokens", type=int, help="default: 4 for easy-VQA's one-word answers, else 16")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--output", help="also write the rows as JSON lines to this new file")


def _demo(args: argparse.Namespace) -> int:
    from .eval.demo import run_demo

    run_demo(args.model, args.image, args.question, args.max_new_tokens, args.device, args.backend, args.output)
    return 0


# reproduce ----------------------------------------------------------------------------------------
def _reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=os.environ.get("CKPT"), help="checkpoint (default $CKPT; none: the toy LLaVA)")
    parser.add_argument("--data-root", default=os.environ.get("DATA"),
                        help="LLaVA's playground/data/eval (default $DATA; none: a sample of easy-VQA's test split)")
    parser.add_argument("--backend", default=os.environ.get("BACKEND", "llava"), choices=("llava", "hf"),
                        help="with --model (the toy always runs on transformers)")
    parser.add_argument("--output-root", default="runs/reproduce")
    parser.add_argument("--benchmarks", nargs="+", choices=benchmark_names(), metavar="BENCHMARK",
                        help="default: pope gqa with --model; easyvqa easyvqa_yesno for the toy")
    parser.add_argument("--methods", nargs="+", choices=MethodNames(), metavar="METHOD",
                        help="default: every method that takes a reduction ratio, and the unpruned model")
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.75, 0.9, 0.95])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="only the first N questions of each benchmark")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--images", type=int,
                        help="the toy sweep: how many easy-VQA test images to ask about (default: sweep.TOY_IMAGES)")


def _reproduce(args: argparse.Namespace) -> int:
    from .eval.sweep import reproduce

    reproduce(args.model, args.data_root, Path(args.output_root), args.benchmarks, args.methods, args.ratios,
              args.backend, args.batch_size, args.limit, args.threads, args.images)
    return 0


# score --------------------------------------------------------------------------------------------
def _score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=benchmark_names(), metavar="BENCHMARK", help="one of: %(choices)s")
    parser.add_argument("--answers", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--submission", help="for server-scored benchmarks (vqav2, vizwiz, mmbench(_cn) test, mmvet): "
                                             "write the upload file here (a new file)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="score questions without an answer as wrong (the metrics count them) instead of refusing")


def _score(args: argparse.Namespace) -> int:
    from .eval.runner import score_answers
    from .eval.scoring import write_submission

    if args.submission:
        print(f"wrote {write_submission(args.benchmark, args.answers, args.data_root, args.submission, args.allow_partial)}")
        return 0
    metrics = score_answers(args.benchmark, args.answers, args.data_root, allow_partial=args.allow_partial)
    if metrics is None:
        raise ValueError(f"{args.benchmark} is scored by its server: pass --submission FILE for its upload file")
    print(json.dumps(metrics, indent=2))
    return 0


# methods ------------------------------------------------------------------------------------------
def _methods_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per method")


def _methods(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from . import method_info, methods

    for name in methods():
        info = method_info(name)
        if args.json:
            print(json.dumps(asdict(info)))
            continue
        budget = ("none (keeps every token)" if not info.takes_budget else
                  f"keep ∈ {list(info.budgets)}" if info.budgets else "keep or reduction_ratio")
        options = ", ".join(f"{key}={value!r}" for key, value in info.options.items()) or "—"
        print(f"{name:14s} stage={info.stage:6s} budget: {budget}; options: {options}"
              f"{'; token count varies per image' if info.variable_count else ''}\n{'':14s} {info.description}")
    return 0


# tables / figures ---------------------------------------------------------------------------------
def _tables_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", help="a directory holding evaluation runs (metrics.json + manifest.json)")
    parser.add_argument("--output", default="paper_tables")
    parser.add_argument("--tolerance", type=float, default=0.015, help="flag |Δ| above this fraction of the published value")


def _tables(args: argparse.Namespace) -> int:
    from .paper.tables import write_tables

    for path in write_tables(args.output, args.runs, tolerance=args.tolerance):
        print(f"wrote {path}")
    return 0


def _figures_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", help="a directory holding evaluation runs")
    parser.add_argument("--output", default="figures")
    parser.add_argument("--model", help="the attention figures on this transformers LLaVA checkpoint (default: the "
                                        "toy LLaVA, on four real photos)")
    parser.add_argument("--samples", help="samples in LLaVA's instruction format (JSON list, e.g. a 1 000-sample "
                                          "subset of llava_v1_5_mix665k.json; default: four real photos)")
    parser.add_argument("--image-root", help="the directory the samples' image paths are relative to")
    parser.add_argument("--limit", type=int, help="the first N samples only")
    parser.add_argument("--no-attention", action="store_true", help="the retention curves only (no model is run)")


def _figures(args: argparse.Namespace) -> int:
    import shlex

    from .paper.figures import load_attention_study, write_attention_figures, write_figures

    paths = write_figures(args.output, args.runs)
    if not args.no_attention:
        study = load_attention_study(args.model, args.samples, args.image_root, args.limit)
        made_by = ["llava-patch", "figures"]  # for the sidecars: the options that chose the model and samples
        for option, value in (("--model", args.model), ("--samples", args.samples), ("--image-root", args.image_root),
                              ("--limit", args.limit)):
            if value is not None:
                made_by += [option, str(value)]
        paths += write_attention_figures(study, args.output, shlex.join(made_by))
    for path in paths:
        print(f"wrote {path}")
    return 0


# cost / bench -------------------------------------------------------------------------------------
def _cost_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="llava-1.5-7b", help="llava-1.5-7b, llava-1.5-13b, llava-next-7b, video-llava-7b")
    add_budget(parser)
    parser.add_argument("--text-tokens", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=0)
    parser.add_argument("--llm-layer", type=int, help="an LLM-stage method's pruning layer (default: the method's own, FastV's K=2)")
    parser.add_argument("--recipe", help="fitprune: a recipe file (default: the authors' published LLaVA-1.5-7B recipe "
                                         "for --reduction-ratio); its target is the budget when none is given")
    parser.add_argument("--schedule", help="an LLM-stage method's visual tokens per decoder layer, measured (e.g. "
                                           "handle.last_layer_visual_tokens[0]): comma-separated ints or a JSON file "
                                           "holding a list; needed for sparsevlm")
    parser.add_argument("--counting", choices=("executed", "authors"), default="executed",
                        help="fitprune: 'authors' counts each layer's o_proj and MLP without the tokens it deletes, as "
                             "FitPrune's own FLOPs count does (default: executed, every layer whole)")


def _schedule(text: str | None) -> list[int] | None:
    """--schedule: comma-separated ints, or a JSON file holding a list of ints."""
    if text is None:
        return None
    if Path(text).is_file():
        values = json.loads(Path(text).read_text())
        if not isinstance(values, list):
            raise ValueError(f"--schedule {text}: expected a JSON list of ints, one per decoder layer")
        return values
    try:
        return [int(value) for value in text.split(",")]
    except ValueError:
        raise ValueError(f"--schedule {text!r}: expected comma-separated ints or a JSON file") from None


def _cost(args: argparse.Namespace) -> int:
    from .efficiency.cost import MODELS, estimate

    if args.model not in MODELS:
        raise ValueError(f"--model {args.model!r}; known: {', '.join(MODELS)}")
    result = estimate(args.model, args.method, keep=args.keep, reduction_ratio=args.reduction_ratio,
                      text_tokens=args.text_tokens, new_tokens=args.new_tokens, llm_layer=args.llm_layer,
                      recipe=args.recipe, schedule=_schedule(args.schedule), counting=args.counting)
    result.pop("spec")
    print(json.dumps(result, indent=2))
    return 0


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--toy", action="store_true",
                        help="time a trained model instead: every pruning method at 95%% beside the unpruned one on "
                             "easy-VQA test images with their questions (prefill and generate; --model: its checkpoint "
                             "folder, default the toy LLaVA)")
    parser.add_argument("--model", help="llava-1.5-7b (default on GPU) or cpu-small (default on CPU); with --toy a "
                                        "transformers LLaVA checkpoint folder")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: 1 8 32 on GPU, 1 8 on CPU; with --toy 1 8")
    parser.add_argument("--repeats", type=int, help="timed repeats per setting (default 5 on GPU, 3 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default 2 on GPU, 1 on CPU)")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--text-tokens", type=int, default=60,
                        help="POPE's prompts have about 60 text tokens (not with --toy: its prompts are real)")
    parser.add_argument("--throughput-prompts", type=int, help="default: 8 910 (POPE's size) on GPU, 16 on CPU")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); recorded in the results")
    parser.add_argument("--output", required=True, help="a new directory, e.g. experiments/efficiency/cpu-small")


def _bench(args: argparse.Namespace) -> int:
    import torch

    from .efficiency import bench

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = bench.defaults(gpu=device.startswith("cuda"))
    chosen = {name: getattr(args, name) for name in settings if getattr(args, name, None) is not None}
    measured = {**settings, **chosen}
    if args.toy:
        paths = bench.toy_speedups(Path(args.output), args.model, device, tuple(args.batch_sizes or (1, 8)),
                                   measured["repeats"], measured["warmup"], args.new_tokens)
    else:
        paths = bench.run(**{**measured, "device": device, "new_tokens": args.new_tokens,
                             "text_tokens": args.text_tokens, "output": Path(args.output)})
    for path in paths:
        print(f"wrote {path}")
    return 0


# convert / compare --------------------------------------------------------------------------------
def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", choices=("hf", "llava"), required=True, help="target layout")
    parser.add_argument("source")
    parser.add_argument("destination", help="a new (or empty) directory; nothing is overwritten")


def _convert(args: argparse.Namespace) -> int:
    from .models import convert

    target = convert.original_to_hf if args.to == "hf" else convert.hf_to_original
    print(f"wrote {target(args.source, args.destination)}")
    return 0


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--atol", type=float, default=0.0, help="largest absolute difference still counted as equal")


def _compare(args: argparse.Namespace) -> int:
    from .models.convert import compare_checkpoints

    report = compare_checkpoints(args.first, args.second, atol=args.atol)
    print(json.dumps(report, indent=2))
    return 0 if report["same_model"] else 1


# train-toy ----------------------------------------------------------------------------------------
def _train_toy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="runs/toy-training",
                        help="folder for the projector, its log and record (a rerun resumes; a finished one is refused)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--images-per-step", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.epilog = "Unset options take the defaults of llava_patch.training.projector.TrainingConfig."


def _train_toy(args: argparse.Namespace) -> int:
    from .training.projector import TrainingConfig, train_projector

    names = ("steps", "images_per_step", "learning_rate", "warmup_steps", "seed", "threads")
    config = TrainingConfig(**{name: getattr(args, name) for name in names if getattr(args, name) is not None})
    path = train_projector(args.output, config, command=" ".join(["llava-patch", *sys.argv[1:]]))
    print(f"wrote {path}; to make it the toy's projector: cp {path} {Path(args.output) / 'training*'} "
          "llava_patch/models/toy_weights/")
    return 0


# fitprune-recipe, sparsevlm-calibrate: fitted on calibration questions ----------------------------
def _calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and calibration questions both fitting commands take, and their --limit and --device."""
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id (e.g. liuhaotian/llava-v1.5-7b)")
    parser.add_argument("--backend", choices=("hf", "llava"), default="hf")
    parser.add_argument("--data", required=True, help="calibration questions: LLaVA's question JSONL "
                                                      "({question_id, image, text} per line)")
    parser.add_argument("--image-folder", required=True, help="the folder the questions' image paths are relative to")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--device", help="default: cuda when available, else cpu")


def _fitprune_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    _calibration_arguments(parser)
    parser.add_argument("--reduction-ratio", type=float, required=True,
                        help="the FLOPs reduction to fit for, a fraction in [0, 1) (e.g. 0.9)")
    parser.add_argument("--output", required=True, help="the recipe JSON to write (a new file; never overwritten)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="the bisection's final alpha bracket (FitPrune: 0.01)")
    parser.epilog = "FitPrune's statistical analysis (docs/fitprune.md); load the result with llava_patch.calibration.load_recipe."


def _fitprune_recipe(args: argparse.Namespace) -> int:
    from .calibration.fitprune import generate_recipe

    recipe = generate_recipe(args.model, args.data, args.image_folder, args.reduction_ratio, args.output,
                             backend=args.backend, limit=args.limit, device=args.device, tolerance=args.tolerance)
    print(f"wrote {args.output}: delete {recipe.delete} (alpha {recipe.fitting['alpha']:.4f}, "
          f"{recipe.layer_mean_visual_tokens():.1f} visual tokens per layer on average)")
    if not recipe.fitting["reached"]:
        print(f"warning: the last trial (the recipe, as FitPrune's code returns it) did not reach the target; by "
              f"FitPrune's count it reduces FLOPs by {recipe.flops_reduction():.4f}", file=sys.stderr)
    return 0


def _sparsevlm_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    _calibration_arguments(parser)
    parser.add_argument("--keep", type=int, required=True,
                        help="the target: mean layer-averaged visual tokens per sample (FasterVLM's \"# Token\", e.g. 432)")
    parser.add_argument("--output", required=True, help="the settings JSON to write (a new file; never overwritten)")
    parser.add_argument("--bias", type=float, default=0.0, help="SparseVLM's bias, held fixed while scale is searched (default 0)")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per forward pass (default 8)")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="stop when the mean is within this fraction of --keep (default 0.005)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a further apply option, as for eval (e.g. --option mode=paper for LLaVA-NeXT's layout)")
    parser.epilog = ("SparseVLM's scale for a layer-averaged token count (docs/sparsevlm.md); run it with "
                     "--method sparsevlm --keep N --option settings=FILE.")


def _sparsevlm_calibrate(args: argparse.Namespace) -> int:
    from .calibration.sparsevlm import calibrate
    from .eval.command import parse_options

    settings = calibrate(args.model, args.data, args.image_folder, args.keep, args.output, backend=args.backend,
                         bias=args.bias, limit=args.limit, device=args.device, batch_size=args.batch_size,
                         tolerance=args.tolerance, options=parse_options(args.option))
    print(f"wrote {args.output}: scale {settings['scale']:.4f}, bias {settings['bias']:g} → "
          f"{settings['mean_layer_visual_tokens']:.2f} layer-averaged visual tokens (target {args.keep}; "
          f"{settings['mean_final_visual_tokens']:.1f} after the last pruning layer), {len(settings['trials'])} trials")
    if not settings["reached"]:
        print(f"warning: no scale within the bracket resolution gives a mean within {args.tolerance:g} of the "
              "target; the closest trial was written", file=sys.stderr)
    return 0


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "demo": ("every method on one image: visual tokens, answer, time", _demo_arguments, _demo),
    "reproduce": ("the evaluation sweep with its table and retention figure (`make reproduce`)",
                  _reproduce_arguments, _reproduce),
    "eval": ("answer a benchmark with a (pruned) model, resumably; score it", eval_command.add_arguments, eval_command.run),
    "score": ("print a benchmark's metrics for an answers file as JSON", _score_arguments, _score),
    "methods": ("the registered methods and what each declares", _methods_arguments, _methods),
    "tables": ("render the papers' tables (Markdown + LaTeX) with reproduced values", _tables_arguments, _tables),
    "figures": ("retention curves from published and reproduced numbers; attention figures", _figures_arguments, _figures),
    "cost": ("MACs/FLOPs per component and KV-cache bytes (cost model)", _cost_arguments, _cost),
    "bench": ("latency/memory benchmark vs the reference approach", _bench_arguments, _bench),
    "convert": ("convert a LLaVA-1.5 checkpoint between the original and llava-hf layouts", _convert_arguments, _convert),
    "compare": ("compare two checkpoints tensor by tensor (either layout)", _compare_arguments, _compare),
    "train-toy": ("train the toy LLaVA's projector on easy-VQA (2-core CPU: about 37 minutes)", _train_toy_arguments,
                  _train_toy),
    "fitprune-recipe": ("fit a FitPrune pruning recipe on calibration questions (GPU for real checkpoints)",
                        _fitprune_recipe_arguments, _fitprune_recipe),
    "sparsevlm-calibrate": ("calibrate SparseVLM's scale to a layer-averaged token count (GPU for real checkpoints)",
                            _sparsevlm_calibrate_arguments, _sparsevlm_calibrate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llava-patch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a user error prints one line naming the command (rc 2), Ctrl-C one line (rc 130)."""
    args = build_parser().parse_args(argv)
    return run_reporting_errors(args.command, args.run, args)


if __name__ == "__main__":
    sys.exit(main())
