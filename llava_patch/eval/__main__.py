"""`python -m llava_patch.eval ...` — the same as `llava-patch eval ...` (what `accelerate launch -m` runs)."""

import sys

from .command import main

sys.exit(main())
