"""Shrink a processor's image placeholders to the number of tokens actually kept.

Processors expand each image into as many placeholder tokens as the unpruned model needs (576 for
LLaVA-1.5). After selection an image has fewer features, so the surplus placeholders leave the
sequence; rows are then re-padded, to the longest row, on the side they were padded on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ShrunkInputs:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    visual_tokens: list[int]  # placeholder tokens left in each row


def shrink_placeholders(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    image_token_id: int,
    tokens_per_image: int,
    keep_per_image: list[int],
    pad_token_id: int,
    labels: torch.Tensor | None = None,
) -> ShrunkInputs:
    """Keep the first `keep_per_image[j]` placeholders of the j-th image (images counted row by row).

    Placeholders are identical tokens, so which ones leave does not matter; the kept features fill
    the remaining ones in order.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    is_image = input_ids == image_token_id
    found = int(is_image.sum())
    expected = tokens_per_image * len(keep_per_image)
    if found != expected:
        raise ValueError(
            f"input_ids hold {found} image placeholder tokens (id {image_token_id}) but {len(keep_per_image)} "
            f"image(s) of {tokens_per_image} tokens each need {expected}; build the prompt with the model's "
            "processor so each image is expanded to its full placeholder count"
        )
    # Padding is rebuilt rather than carried: only attended tokens are kept, then rows are re-padded.
    keep_token = attention_mask.bool().clone()
    visual_tokens = []
    image = 0
    for row in range(input_ids.shape[0]):
        positions = is_image[row].nonzero().squeeze(-1)
        for start in range(0, positions.numel(), tokens_per_image):
            keep_token[row, positions[start + keep_per_image[image] : start + tokens_per_image]] = False
            image += 1
        visual_tokens.append(int((is_image[row] & keep_token[row]).sum()))

    lengths = keep_token.sum(dim=1)
    length = int(lengths.max())
    # No row ends in padding: the batch is left padded (or unpadded, where left is what generation needs).
    pad_left = bool((attention_mask[:, -1] == 1).all())

    def repack(values: torch.Tensor, fill: int) -> torch.Tensor:
        out = values.new_full((values.shape[0], length), fill)
        for row in range(values.shape[0]):
            kept = values[row][keep_token[row]]
            if pad_left:
                out[row, length - kept.numel() :] = kept
            else:
                out[row, : kept.numel()] = kept
        return out

    return ShrunkInputs(
        input_ids=repack(input_ids, pad_token_id),
        attention_mask=repack(attention_mask, 0),
        labels=None if labels is None else repack(labels, -100),
        visual_tokens=visual_tokens,
    )
