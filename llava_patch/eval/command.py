"""The `eval` command's arguments and runner, shared by `llava-patch eval` and `python -m llava_patch.eval`
(argument parsing only: the runner's heavy imports happen when it runs), and the argument pieces other
commands reuse (`--method` with the registry's names, the budget, `--option`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator


class MethodNames:
    """`--method` choices. Listing them (for --help) reads the file names in `llava_patch/methods/`,
    which are the method names (a test keeps the two equal), so help needs no torch; checking a name
    asks the registry itself."""

    def __iter__(self) -> Iterator[str]:
        folder = Path(__file__).resolve().parent.parent / "methods"
        return iter(sorted(path.stem for path in folder.glob("*.py") if path.stem not in ("__init__", "base")))

    def __contains__(self, name: object) -> bool:
        from .. import methods

        return name in methods()


def benchmark_names() -> list[str]:
    from .benchmarks import BENCHMARKS

    return list(BENCHMARKS)


def add_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="none", choices=MethodNames(), metavar="METHOD",
                        help="a registered method: %(choices)s (`llava-patch methods` says what each declares)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--keep", type=int, help="visual tokens kept per image (crop, frame)")
    budget.add_argument("--reduction-ratio", type=float, help="fraction of visual tokens pruned, e.g. 0.95")


def parse_options(pairs: list[str], flag: str = "--option") -> dict:
    """NAME=VALUE pairs; values are JSON when they parse (3, true, "x"), else strings."""
    options = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator:
            raise ValueError(f"{flag} {pair!r}: expected NAME=VALUE")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id")
    parser.add_argument("--backend", choices=("llava", "hf"), default="llava")
    parser.add_argument("--benchmark", required=True, choices=benchmark_names(), metavar="BENCHMARK",
                        help="one of: %(choices)s")
    parser.add_argument("--data-root", required=True, help="LLaVA's playground/data/eval directory")
    parser.add_argument("--output-dir", required=True, help="a new directory, or a stopped run of the same settings to resume")
    add_budget(parser)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a method or model option, e.g. --option layers=3 --option mode=paper (JSON values)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--limit", type=int, help="only the first N questions (smoke runs)")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"))
    without = parser.add_mutually_exclusive_group()
    without.add_argument("--no-image", action="store_true",
                         help="ask every question without its image: the text-only baseline (with --method none)")
    without.add_argument("--empty-image", action="store_true",
                         help="ask with the image prompt but 0 visual tokens in place of the image, the text around "
                              "it kept: what FasterVLM's code feeds at 100%% reduction, the papers' 0-token row "
                              "(with --method none)")
    parser.add_argument("--printed-tokens", type=int, metavar="N",
                        help="the '# Token' a paper's table prints for the row this run fills, where the budget its "
                             "authors' code used differs (FastV at 90%%: --keep 57 --printed-tokens 58); recorded in "
                             "the manifest beside the measured count, and `llava-patch tables` files the run there")


def run(args: argparse.Namespace) -> int:
    """The run prints one line at its end (its headline number, measured tokens and folder, or that it
    was already complete); the manifest stays in its file."""
    from .runner import RunConfig, run

    run(RunConfig(
        model=args.model, benchmark=args.benchmark, data_root=args.data_root, output_dir=args.output_dir,
        backend=args.backend, method=args.method, options=parse_options(args.option), keep=args.keep,
        reduction_ratio=args.reduction_ratio, batch_size=args.batch_size, limit=args.limit, dtype=args.dtype,
        no_image=args.no_image, empty_image=args.empty_image, printed_tokens=args.printed_tokens,
    ))
    return 0


def run_reporting_errors(command: str, function, args: argparse.Namespace) -> int:
    """Run a command; a user error prints one line naming the command (rc 2), Ctrl-C one line (rc 130)."""
    try:
        return function(args)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"llava-patch {command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"llava-patch {command}: {interrupt or 'interrupted'}", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """`python -m llava_patch.eval ...`: the same as `llava-patch eval ...`."""
    parser = argparse.ArgumentParser(prog="python -m llava_patch.eval", description=__doc__)
    add_arguments(parser)
    return run_reporting_errors("eval", run, parser.parse_args(argv))
