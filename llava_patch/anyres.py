"""LLaVA-NeXT ("anyres") layouts of pruned crops, shared by both backends.

An image is a base crop (the whole image at 336 px) plus a rows×cols grid of 336-px crops. Every crop
keeps its own top-`keep` patches. The kept tokens are then laid out in one of two modes:

- "paper": FasterVLM's setting (its issue #8 and tables): a fixed 672×672 grid (2×2 crops), `spatial`
  merge without unpadding and without newline tokens. Sequence: the base crop's kept tokens (raster
  order), then the grid crops' kept tokens in row-major order over the stitched (rows·24)×(cols·24)
  patch grid. Exactly (1 + rows·cols)·keep tokens.
- "native": the checkpoint's own `spatial_unpad`: kept grid tokens that fall in the padding (outside
  the image's aspect ratio) vanish, and every row of the unpadded grid ends with the learned newline
  token, kept or not. The count depends on the image: base keep + kept tokens inside + rows.

With keep = all patches, "native" is exactly the unpruned model's layout.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

MODES = ("paper", "native")


def paper_grid_pinpoints(crop_size: int) -> list[list[int]]:
    """The paper's fixed 2×2 grid for a tower of `crop_size` pixels (672×672 for 336)."""
    return [[2 * crop_size, 2 * crop_size]]


class NextLayout:
    """One LLaVA-NeXT model's crop layout in a mode, for either backend.

    config: the model config holding `image_grid_pinpoints` (set to the paper's fixed grid while
    installed in paper mode, restored by `restore`). grid_shape(image_size) → (rows, cols) and
    unpad(index_map, image_size) are the backend's own functions (each backend orders and sizes
    images its own way; these take its `image_sizes` entries as they are).
    """

    def __init__(self, config: Any, mode: str, crop_size: int, side: int) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; LLaVA-NeXT modes are {', '.join(MODES)}")
        self.config, self.mode, self.crop_size, self.side = config, mode, crop_size, side
        self.original_pinpoints = config.image_grid_pinpoints

    def tokens_per_image(self, keep: int) -> int | None:
        return 5 * keep if self.mode == "paper" else None  # base + 2×2 grid; native depends on the image

    def install(self) -> None:
        if self.mode == "paper":
            self.config.image_grid_pinpoints = paper_grid_pinpoints(self.crop_size)

    def restore(self) -> None:
        self.config.image_grid_pinpoints = self.original_pinpoints

    def arrange(self, kept: torch.Tensor, scores: torch.Tensor, projected: torch.Tensor, crop_counts: list[int],
                image_sizes, grid_shape: Callable, unpad: Callable, newline: torch.Tensor | None):
        """Per image: its feature sequence (`arrange_crops`), its kept indices and its scores per crop.

        kept/scores/projected: the selection over all crops of the call, images one after another
        (`crop_counts` crops each, the base crop first)."""
        features = []
        for image_kept, image_features, size in zip(kept.split(crop_counts), projected.split(crop_counts), image_sizes):
            features.append(arrange_crops(image_kept, image_features, grid_shape(size), self.side, self.mode,
                                          lambda index_map, size=size: unpad(index_map, size), newline))
        return (features, [list(image) for image in kept.split(crop_counts)],
                [list(image) for image in scores.split(crop_counts)])


def arrange_crops(
    kept: torch.Tensor,
    features: torch.Tensor,
    grid: tuple[int, int],
    side: int,
    mode: str,
    unpad: Callable[[torch.Tensor], torch.Tensor] | None = None,
    newline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sequence of one image's features.

    kept: (crops, keep) kept patch indices per crop, crop 0 the base image, crops 1.. the grid row by row.
    features: (crops, keep, hidden) their projected features. grid: (rows, cols). side: patches per crop side.
    unpad, newline (native mode): the backend's own unpad function applied to a (1, H, W) map of
    global patch indices, and the newline embedding.
    """
    rows, cols = grid
    if kept.shape[0] != 1 + rows * cols:
        raise ValueError(f"{kept.shape[0]} crops for a {rows}×{cols} grid (expected {1 + rows * cols} with the base)")
    hidden = features.shape[-1]
    crop = torch.arange(rows * cols, device=kept.device)
    y = (crop // cols)[:, None] * side + kept[1:] // side  # global patch row of every kept grid token
    x = (crop % cols)[:, None] * side + kept[1:] % side
    y, x, tokens = y.flatten(), x.flatten(), features[1:].reshape(-1, hidden)
    width = cols * side
    if mode == "paper":
        return torch.cat([features[0], tokens[(y * width + x).argsort()]])
    if mode != "native":
        raise ValueError(f"mode={mode!r}; choose one of {', '.join(MODES)}")
    index_map = torch.arange(rows * side * width, device=kept.device).view(1, rows * side, width)
    region = unpad(index_map)[0]  # the part of the grid the image covers
    top, left = divmod(int(region[0, 0]), width)
    height, region_width = region.shape
    inside = (y >= top) & (y < top + height) & (x >= left) & (x < left + region_width)
    row, column = y[inside] - top, x[inside] - left
    # Row-major over the unpadded grid with one newline closing each row (key = row·(W+1) + column).
    lines = torch.arange(height, device=kept.device)
    keys = torch.cat([row * (region_width + 1) + column, lines * (region_width + 1) + region_width])
    sequence = torch.cat([tokens[inside], newline.to(tokens.dtype).expand(height, hidden)])
    return torch.cat([features[0], sequence[keys.argsort()]])
