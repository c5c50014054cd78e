"""Random baseline: a seeded random subset of patches per image.

The draw for an image depends only on `seed` and the image's pixels, so it is the same whatever the
batch, its order, the sharding or a resumed run.
"""

from __future__ import annotations

import hashlib

import torch

from ..registry import register_method
from .base import SelectionInputs, Selector


@register_method("random")
class RandomSelection(Selector):
    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"random: seed must be an int, got {seed!r}")
        self.seed = seed

    def scores(self, inputs: SelectionInputs, num_patches: int) -> torch.Tensor:
        rows = []
        for image in inputs.pixel_values:
            digest = hashlib.blake2b(image.detach().to("cpu", torch.float32).numpy().tobytes(), digest_size=8)
            digest.update(self.seed.to_bytes(8, "little", signed=True))
            generator = torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") & (2**63 - 1))
            rows.append(torch.rand(num_patches, generator=generator))
        return torch.stack(rows).to(inputs.pixel_values.device)
