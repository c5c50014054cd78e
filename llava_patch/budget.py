"""Token budgets: how many patch tokens per image (crop, frame) reach the language model."""

from __future__ import annotations

import math


def keep_for_ratio(reduction_ratio: float, num_tokens: int) -> int:
    """Tokens kept when pruning `reduction_ratio` of `num_tokens`: round(n·(1−R)), halves rounded up.

    LLaVA-1.5 (576 patches): 0.25→432, 0.5→288, 0.75→144, 0.9→58, 0.95→29.
    """
    if not 0.0 <= reduction_ratio < 1.0:
        raise ValueError(f"reduction_ratio must be in [0, 1), got {reduction_ratio!r}")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens!r}")
    # The 1e-9 guards against products like 576*0.05 = 28.799999999999997 landing just under a half.
    return math.floor(num_tokens * (1.0 - reduction_ratio) + 0.5 + 1e-9)


def resolve_keep(keep: int | None, reduction_ratio: float | None, num_tokens: int | None) -> int | None:
    """The absolute per-image budget from exactly one of `keep` or `reduction_ratio`.

    num_tokens=None: budgets relative to each sample (FastV's); only validated, `keep` is returned as
    given and a ratio gives None (it is applied per sample later).
    """
    if keep is not None and reduction_ratio is not None:
        raise ValueError("pass either keep or reduction_ratio, not both")
    if keep is None and reduction_ratio is None:
        raise ValueError("pass a budget: keep=<tokens per image> or reduction_ratio=<fraction pruned>")
    if reduction_ratio is not None:
        if num_tokens is None:
            keep_for_ratio(reduction_ratio, 1)  # range check only
            return None
        keep = keep_for_ratio(reduction_ratio, num_tokens)
        if keep < 1:
            raise ValueError(
                f"reduction_ratio={reduction_ratio} leaves {keep} of {num_tokens} tokens; at least 1 must be kept"
            )
        return keep
    if isinstance(keep, bool) or not isinstance(keep, int):
        raise ValueError(f"keep must be an int, got {keep!r}")
    if keep < 1:
        raise ValueError(f"keep={keep}: at least 1 token must be kept")
    if num_tokens is not None and keep > num_tokens:
        raise ValueError(f"keep={keep} is outside [1, {num_tokens}] (this model has {num_tokens} patch tokens per image)")
    return keep
