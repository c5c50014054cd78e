"""FastV (Chen et al., 2024), as FasterVLM's tables run it: prune visual tokens inside the LLM, once, at prefill.

Every patch reaches the projector; the language model drops visual tokens from decoder layer K on.

While applied, the Llama-style decoder's `forward` (transformers `LlamaModel`, used by every backend)
is replaced by `_FastVForward`: the same computation as `LlamaModel.forward`, split at decoder layer K
(option `layer`, default 2):

- Prefill (an empty cache and a call whose visual positions the adapter reported): layers < K run on
  the full sequence. The last prompt token's attention row in layer K−1 — softmax(q_last·Kᵀ/√d), mean
  over heads, from that layer's own q/k projections with RoPE applied, GQA heads repeated — ranks each
  sample's visual tokens (all its images, crops or frames jointly); the top `keep` (or
  round(N·(1−R))) stay, in order, with every text token. Layers ≥ K run on the kept tokens at their
  **original position ids** (gaps), so their KV cache holds only kept tokens while layers < K hold
  the full sequence.
- Decoding: layers < K attend over the full cache, layers ≥ K over the kept cache; each group gets its
  own padding mask (the kept one extends the prefill's), positions continue from the originals.

Only one attention row is computed; the decoder keeps its sdpa/flash kernel everywhere.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

from ..budget import keep_for_ratio
from ..registry import register_method
from .base import LanguageModelMethod


@register_method("fastv")
class FastV(LanguageModelMethod):
    def __init__(self, layer: int = 2) -> None:
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
            raise ValueError(f"fastv: layer must be a positive int (the decoder layer where pruning starts), got {layer!r}")
        self.layer = layer
        self.keep: int | None = None
        self.reduction_ratio: float | None = None
        self._forward: _FastVForward | None = None

    def check_language_model(self, language_model: nn.Module) -> None:
        num_layers = len(language_model.layers)
        if not 1 <= self.layer < num_layers:
            raise ValueError(f"fastv layer={self.layer} must be in [1, {num_layers - 1}] for this {num_layers}-layer LLM")

    def attach(self, language_model: nn.Module, keep: int | None, reduction_ratio: float | None, recorder) -> None:
        self.keep, self.reduction_ratio = keep, reduction_ratio
        self._forward = _FastVForward(self, language_model, recorder)
        language_model.forward = self._forward

    def detach(self) -> None:
        del self._forward.llm.forward
        self._forward = None

    def visual_positions(self, mask: torch.Tensor) -> None:
        self._forward.image_mask = mask

    def tokens_kept(self, visual_tokens: int) -> int:
        if self.reduction_ratio is not None:
            return keep_for_ratio(self.reduction_ratio, visual_tokens)
        if self.keep > visual_tokens:
            raise ValueError(f"fastv keep={self.keep} exceeds the {visual_tokens} image tokens of a sample")
        return self.keep


class _FastVForward:
    """Bound as `language_model.forward` while FastV is applied; see the module docstring."""

    def __init__(self, method: FastV, language_model: nn.Module, recorder) -> None:
        self.method, self.llm, self.recorder = method, language_model, recorder
        self.image_mask: torch.Tensor | None = None  # (B, L) visual positions of the next prefill (the adapter's)
        self.kept_mask: torch.Tensor | None = None  # (B, L') padding mask of the kept sequence after prefill
        self.prompt_length = 0
        self.cache = None  # the cache the kept mask belongs to

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                 inputs_embeds=None, use_cache=None, **kwargs) -> BaseModelOutputWithPast:
        llm, config, layer_k = self.llm, self.llm.config, self.method.layer
        if kwargs.get("output_attentions") or kwargs.get("output_hidden_states"):
            raise ValueError("fastv does not return attentions or hidden states")
        if inputs_embeds is None:
            inputs_embeds = llm.embed_tokens(input_ids)
        use_cache = config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=config)
        seen = past_key_values.get_seq_length() if past_key_values is not None else 0
        batch, length = inputs_embeds.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(batch, seen + length, dtype=torch.long, device=inputs_embeds.device)
        if position_ids is None:
            position_ids = (torch.arange(length, device=inputs_embeds.device) + seen).expand(batch, -1)
        prefill = seen == 0 and self.image_mask is not None
        if prefill and self.image_mask.shape != (batch, length):
            raise ValueError(f"fastv: visual-token mask {tuple(self.image_mask.shape)} does not match the sequence {(batch, length)}")

        hidden = inputs_embeds
        mask = create_causal_mask(config, hidden, attention_mask, past_key_values, position_ids)
        cos, sin = llm.rotary_emb(hidden, position_ids=position_ids)
        scored = llm.layers[layer_k - 1].self_attn
        captured: dict[str, torch.Tensor] = {}
        hooks = [scored.q_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("q", o)),
                 scored.k_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("k", o))] if prefill else []
        try:
            for layer in llm.layers[:layer_k]:
                hidden = layer(hidden, attention_mask=mask, position_embeddings=(cos, sin), position_ids=position_ids,
                               past_key_values=past_key_values, use_cache=use_cache, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()

        if prefill:
            scores = last_token_attention(captured["q"], captured["k"], cos, sin, attention_mask, scored)
            index, kept_mask = self._select(scores, attention_mask)
            gather = index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
            hidden, position_ids = hidden.gather(1, gather), position_ids.gather(1, index)
            self.kept_mask, self.prompt_length, self.cache, self.image_mask = kept_mask, length, past_key_values, None
        elif seen and past_key_values is self.cache:
            kept_mask = torch.cat([self.kept_mask, attention_mask[:, self.prompt_length :]], dim=1)
        else:  # a call without images: nothing was pruned
            kept_mask = attention_mask
        upper = create_causal_mask(config, hidden, kept_mask, past_key_values, None, layer_idx=layer_k)
        cos, sin = llm.rotary_emb(hidden, position_ids=position_ids)
        for layer in llm.layers[layer_k:]:
            hidden = layer(hidden, attention_mask=upper, position_embeddings=(cos, sin), position_ids=position_ids,
                           past_key_values=past_key_values, use_cache=use_cache, **kwargs)
        return BaseModelOutputWithPast(last_hidden_state=llm.norm(hidden), past_key_values=past_key_values)

    def _select(self, scores: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: kept positions (all text, top image tokens), re-padded; and their padding mask."""
        image_mask, layer_k = self.image_mask, self.method.layer
        length = image_mask.shape[1]
        rows, selections, row_scores, kept_counts = [], [], [], []
        for row in range(image_mask.shape[0]):
            images = image_mask[row].nonzero().squeeze(-1)
            keep = self.method.tokens_kept(images.numel()) if images.numel() else 0
            top = scores[row, images].topk(keep).indices.sort().values
            kept = torch.ones(length, dtype=torch.bool, device=scores.device)
            kept[images] = False
            kept[images[top]] = True
            rows.append(kept.nonzero().squeeze(-1))
            selections.append(top)
            row_scores.append(scores[row, images])
            kept_counts.append(keep)
        width = max(row.numel() for row in rows)
        pad_left = bool((attention_mask[:, -1] == 1).all())
        index = torch.zeros(len(rows), width, dtype=torch.long, device=scores.device)
        kept_mask = torch.zeros(len(rows), width, dtype=attention_mask.dtype, device=scores.device)
        padding_mask = attention_mask[:, -length:]
        for row, positions in enumerate(rows):
            span = slice(width - positions.numel(), width) if pad_left else slice(0, positions.numel())
            index[row, span] = positions
            kept_mask[row, span] = padding_mask[row, positions]
        layers = len(self.llm.layers)
        self.recorder.record(selections, row_scores, kept_counts, [
            (layer_k * int(mask.sum()) + (layers - layer_k) * kept) / layers for mask, kept in zip(image_mask, kept_counts)
        ])
        return index, kept_mask


def last_token_attention(queries, keys, cos, sin, attention_mask, attention: nn.Module) -> torch.Tensor:
    """(B, L) head-mean attention of each row's last attended token over all keys, in one layer.

    queries/keys: the layer's q_proj/k_proj outputs (B, L, ·) before RoPE; cos/sin: (B, L, head_dim).
    """
    batch, length, _ = queries.shape
    head_dim = attention.head_dim
    last = (length - 1) - attention_mask[:, -length:].flip(-1).long().argmax(-1)  # last attended position
    rows = torch.arange(batch, device=queries.device)
    q = queries[rows, last].view(batch, -1, head_dim)  # (B, H, hd)
    q = q * cos[rows, last][:, None] + rotate_half(q) * sin[rows, last][:, None]
    k = keys.view(batch, length, -1, head_dim).transpose(1, 2)  # (B, kv, L, hd)
    k = k * cos[:, None] + rotate_half(k) * sin[:, None]
    k = repeat_kv(k, attention.num_key_value_groups)
    logits = torch.einsum("bhd,bhld->bhl", q, k) * attention.scaling
    logits = logits.masked_fill(~attention_mask[:, -length:].bool()[:, None], torch.finfo(logits.dtype).min)
    return logits.softmax(dim=-1, dtype=torch.float32).mean(dim=1)
