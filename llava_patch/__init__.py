"""llava_patch: training-free [CLS]-attention visual token pruning for LLaVA-family models.

    handle = llava_patch.apply(model, "fastervlm", keep=29)   # or reduction_ratio=0.95
    ...                                                        # use the model as usual
    handle.remove()
"""

from .budget import keep_for_ratio
from .patch import PatchHandle, apply
from .registry import methods, register_adapter, register_method

__all__ = ["apply", "PatchHandle", "methods", "keep_for_ratio", "register_method", "register_adapter"]
__version__ = "0.1.0"
