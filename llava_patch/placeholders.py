"""Resize a processor's runs of placeholder tokens to the number of features actually produced.

Processors expand each image (video) into as many placeholder tokens as the unpruned model needs
(576 for LLaVA-1.5). After selection an item usually has fewer features — or, for LLaVA-NeXT's paper
layout, a different count — so each item's run of placeholders is cut or grown to its feature count;
rows are then re-padded, to the longest row, on the side they were padded on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ResizedInputs:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    placeholder_tokens: list[int]  # placeholders left in each row


def resize_placeholders(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    placeholder_id: int,
    placeholders_per_item: list[int],
    features_per_item: list[int],
    pad_token_id: int,
    labels: torch.Tensor | None = None,
) -> ResizedInputs:
    """Give item j (items counted row by row, in order) `features_per_item[j]` placeholders instead of
    the `placeholders_per_item[j]` the processor wrote. Placeholders are identical tokens, so only the
    run lengths change; labels at placeholders are repeated (they are ignore labels)."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    is_placeholder = input_ids == placeholder_id
    found, expected = int(is_placeholder[attention_mask.bool()].sum()), sum(placeholders_per_item)
    if found != expected:
        raise ValueError(
            f"input_ids hold {found} placeholder tokens (id {placeholder_id}) but the {len(placeholders_per_item)} "
            f"item(s) passed need {expected} ({', '.join(map(str, placeholders_per_item))}); build the prompt with "
            "the model's processor so each item is expanded to its full placeholder count (LLaVA-1.5's LlavaProcessor "
            "needs num_additional_image_tokens=1 for CLIP, else it writes 575 per image)"
        )
    rows, row_labels, counts = [], [], []
    item = 0
    for row in range(input_ids.shape[0]):
        attended = attention_mask[row].bool()  # padding is rebuilt, not carried
        tokens = input_ids[row][attended]
        positions = (tokens == placeholder_id).nonzero().squeeze(-1)
        repeats = torch.ones_like(tokens)
        start = 0
        while start < positions.numel():
            run = positions[start : start + placeholders_per_item[item]]
            repeats[run] = 0
            repeats[run[0]] = features_per_item[item]
            start += placeholders_per_item[item]
            item += 1
        rows.append(tokens.repeat_interleave(repeats))
        if labels is not None:
            row_labels.append(labels[row][attended].repeat_interleave(repeats))
        counts.append(int(repeats[positions].sum()))

    length = max(row.numel() for row in rows)
    # No row ends in padding: the batch is left padded (or unpadded, where left is what generation needs).
    pad_left = bool((attention_mask[:, -1] == 1).all())

    def pack(values: list[torch.Tensor], fill: int) -> torch.Tensor:
        out = input_ids.new_full((len(values), length), fill)
        for index, value in enumerate(values):
            if pad_left:
                out[index, length - value.numel() :] = value
            else:
                out[index, : value.numel()] = value
        return out

    return ResizedInputs(
        input_ids=pack(rows, pad_token_id),
        attention_mask=pack([torch.ones_like(row) for row in rows], 0).to(attention_mask.dtype),
        labels=None if labels is None else pack(row_labels, -100),
        placeholder_tokens=counts,
    )
