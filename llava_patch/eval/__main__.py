"""`python -m llava_patch.eval ...` — the same as `llava-patch eval ...`."""

import sys

from ..cli import main

sys.exit(main(["eval", *sys.argv[1:]]))
