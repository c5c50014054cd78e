"""FastV (Chen et al., 2024), as FasterVLM's tables run it: prune visual tokens inside the LLM, once, at prefill.

Every patch reaches the projector; the language model drops visual tokens from decoder layer K on
(option `layer`, default 2), run by the shared decoder loop (`llava_patch.llm_pruning.PruningForward`):

- Prefill: layers < K run on the full sequence. The last prompt token's attention row in layer K−1 —
  softmax(q_last·Kᵀ/√d), mean over heads, from that layer's own q/k projections with RoPE applied,
  GQA heads repeated — ranks each sample's visual tokens (all its images, crops or frames jointly);
  the top `keep` (or round(N·(1−R))) stay, in order, with every text token. Layers ≥ K run on the
  kept tokens at their **original position ids** (gaps), so their KV cache holds only kept tokens
  while layers < K hold the full sequence.
- Decoding: layers < K attend over the full cache, layers ≥ K over the kept cache; positions continue
  from the originals.

Only one attention row is computed; the decoder keeps its sdpa/flash kernel everywhere. FastV's own
transformers-fork modes ("inplace", "mask") select again at every decoding step; FasterVLM ran the
select-once variant of FastV's lmms-eval code, which this is.
"""

from __future__ import annotations

import torch
from torch import nn

from ..budget import keep_for_ratio
from ..registry import register_method
from ..llm_pruning import PruningMethod, PruningPoint, RowDecision


@register_method("fastv")
class FastV(PruningMethod):
    def __init__(self, layer: int = 2) -> None:
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
            raise ValueError(f"fastv: layer must be a positive int (the decoder layer where pruning starts), got {layer!r}")
        super().__init__()
        self.layer = layer

    def check_language_model(self, language_model: nn.Module) -> None:
        num_layers = len(language_model.layers)
        if not 1 <= self.layer < num_layers:
            raise ValueError(f"fastv layer={self.layer} must be in [1, {num_layers - 1}] for this {num_layers}-layer LLM")

    def pruning_layers(self, num_layers: int) -> list[int]:
        return [self.layer - 1]

    def tokens_kept(self, visual_tokens: int) -> int:
        if self.reduction_ratio is not None:
            return keep_for_ratio(self.reduction_ratio, visual_tokens)
        if self.keep > visual_tokens:
            raise ValueError(f"fastv keep={self.keep} exceeds the {visual_tokens} image tokens of a sample")
        return self.keep

    def layer_schedule(self, visual_tokens: int, num_layers: int) -> list[int]:
        return [visual_tokens] * self.layer + [self.tokens_kept(visual_tokens)] * (num_layers - self.layer)

    def prune(self, point: PruningPoint) -> list[RowDecision]:
        sequence, decisions = point.sequence, []
        for row in range(sequence.hidden.shape[0]):
            attended = sequence.row(row)
            last = attended[-1:]
            scores = point.attention_rows(row, last).mean(dim=0)[0]  # (L,) the last token's row, mean over heads
            images = sequence.visual[row].nonzero().squeeze(-1)
            top = scores[images].topk(self.tokens_kept(images.numel()) if images.numel() else 0).indices
            kept = torch.ones_like(sequence.padding[row], dtype=torch.bool)
            kept[images] = False
            kept[images[top]] = True
            decisions.append(RowDecision(kept.nonzero().squeeze(-1), scores=scores[images]))
        return decisions
