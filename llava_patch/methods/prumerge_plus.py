"""PruMerge+ (Shang et al., 2024), VTC-CLS's baseline, as VTC-CLS's code runs it.

- [CLS] attention of the **last** vision layer without heads: softmax(q_cls·Kᵀ/√C) over the full
  C-dimensional q/k projections (C = hidden size).
- Kept: the top-n patches by that attention (in descending attention order) followed by the grid
  `arange(0, P−1, step)` minus those already kept — n/step = 13/11, 40/6, 95/3 for the published
  budgets keep = 64/128/256. The count therefore varies per image (|top-n ∪ grid|, e.g. 54–66 for
  "64"), plus one extra token.
- Each kept token adds the [CLS]-attention-weighted sum of the select-layer features of its 32 most
  key-similar other patches (cosine similarity of last-layer keys); the extra token is the
  attention-weighted sum of all patches not kept. Merging happens before the projector.

Other budgets are refused: the reference silently runs its 256 setting for any value but 64 and 128.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import register_method
from .base import SelectionInputs, Selector

SETTINGS = {64: (13, 11), 128: (40, 6), 256: (95, 3)}  # keep → (top-n by [CLS] attention, grid step)
NEIGHBOURS = 32


@register_method("prumerge_plus")
class PruMergePlus(Selector):
    variable_count = True
    budgets = tuple(SETTINGS)  # VTC-CLS's code would silently run the 256 setting for any other value

    def key_layers(self, num_layers: int) -> list[int]:
        return [num_layers - 1]

    def _attention(self, inputs: SelectionInputs) -> tuple[torch.Tensor, torch.Tensor]:
        ((query, keys),) = inputs.projections.values()
        logits = torch.matmul(query, keys.transpose(1, 2)) * keys.shape[-1] ** -0.5  # (B, 1, 1+P)
        return logits.softmax(dim=-1, dtype=torch.float32)[:, 0, 1:], keys[:, 1:]

    def select(self, inputs: SelectionInputs, num_patches: int):
        attention, _ = self._attention(inputs)
        top, step = SETTINGS[inputs.keep]
        grid = torch.arange(0, num_patches - 1, step, device=attention.device)
        kept = []
        for row in attention:
            best = row.topk(top).indices
            kept.append(torch.cat([best, grid[~torch.isin(grid, best)]]))
        return kept, attention

    def merge(self, patches: torch.Tensor, kept, inputs: SelectionInputs) -> list[torch.Tensor]:
        attention, keys = self._attention(inputs)
        merged = []
        for features, row_keys, weights, chosen in zip(patches, F.normalize(keys.float(), dim=-1), attention, kept):
            similarity = row_keys[chosen] @ row_keys.T  # (kept, P)
            similarity[torch.arange(len(chosen)), chosen] = -torch.inf  # a token is not its own neighbour
            neighbours = similarity.topk(NEIGHBOURS, dim=-1).indices  # (kept, 32)
            absorbed = (features[neighbours] * weights[neighbours, None].to(features.dtype)).sum(dim=1)
            dropped = torch.ones(len(features), dtype=torch.bool, device=features.device)
            dropped[chosen] = False
            extra = (features[dropped] * weights[dropped, None].to(features.dtype)).sum(dim=0, keepdim=True)
            merged.append(torch.cat([features[chosen] + absorbed, extra]))
        return merged
