"""llava_patch: training-free [CLS]-attention visual token pruning for LLaVA-family models.

    handle = llava_patch.apply(model, "fastervlm", keep=29)   # or reduction_ratio=0.95
    ...                                                        # use the model as usual
    handle.remove()

Layout: the patch itself is the top level (`patch`, `registry`, `budget`, `tower`, `cls_attention`,
`placeholders`, `anyres`) with `methods/`, `adapters/` (model families) and `encoders/` (vision-tower
families); around it `models/` (loading, checkpoints, prompts, media, tiny test models), `eval/`,
`paper/` and `efficiency/`, and `cli`. Imports point one way only: cli → {paper, eval, efficiency} →
models → the patch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["apply", "PatchHandle", "get_handle", "methods", "method_info", "MethodInfo", "keep_for_ratio",
           "register_method", "register_adapter"]
__version__ = "0.1.0"

import logging


class _PilFallbackNotice(logging.Filter):
    """torchvision is not a dependency (its only wheel on some hosts breaks `import transformers`), so
    the PIL image processors are used on purpose: drop transformers' notice about that one fallback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back to" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_PilFallbackNotice())

# The subpackage `methods` first, then the function of the same name takes the attribute back (the
# subpackage is light: its members load on first use).
from . import methods as _methods_package  # noqa: E402,F401
from .budget import keep_for_ratio  # noqa: E402
from .registry import MethodInfo, method_info, methods, register_adapter, register_method  # noqa: E402

# These need torch: they resolve on first use, so `import llava_patch.cli` (`llava-patch --help`) stays fast.
_SOURCES = {"apply": "patch", "PatchHandle": "patch", "get_handle": "patch"}

if TYPE_CHECKING:
    from .patch import PatchHandle, apply, get_handle


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'llava_patch' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value
    return value
