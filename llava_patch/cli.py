"""`llava-patch` command line.

    llava-patch convert --to hf    ORIGINAL_DIR OUT_DIR   # original LLaVA layout → transformers llava-hf layout
    llava-patch convert --to llava HF_DIR OUT_DIR         # and back
    llava-patch compare DIR_A DIR_B [--atol 0]            # same model? (either layout; exit 1 if not)
"""

from __future__ import annotations

import argparse
import json
import sys


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
    args = parser.parse_args(argv)

    from . import convert as conversion

    try:
        if args.command == "convert":
            target = conversion.original_to_hf if args.to == "hf" else conversion.hf_to_original
            print(f"wrote {target(args.source, args.destination)}")
            return 0
        report = conversion.compare_checkpoints(args.first, args.second, atol=args.atol)
    except (OSError, ValueError) as error:
        print(f"llava-patch {args.command}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if report["same_model"] else 1


if __name__ == "__main__":
    sys.exit(main())
