"""FastV inside a Llama-style language model (transformers `LlamaModel`, used by every backend).

While FastV is applied, the language model's `forward` is this module's `FastVForward`: the same
computation as transformers' `LlamaModel.forward`, split at decoder layer K (default 2):

- Prefill (an empty cache and a call that carries images): layers < K run on the full sequence.
  The last prompt token's attention row in layer K−1 — softmax(q_last·Kᵀ/√d), mean over heads,
  from that layer's own q/k projections with RoPE applied, GQA heads repeated — ranks each sample's
  image tokens; the top `keep` (or round(N_img·(1−R))) stay, in order, with every text token.
  Layers ≥ K run on the kept tokens at their **original position ids** (gaps), so their KV cache
  holds only kept tokens while layers < K hold the full sequence.
- Decoding: layers < K attend over the full cache, layers ≥ K over the kept cache; each group gets
  its own padding mask (the kept one extends the prefill's), positions continue from the originals.

Only one attention row is computed; the decoder keeps its sdpa/flash kernel everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

from .budget import keep_for_ratio


@dataclass
class FastVState:
    """Per patched model: the budget, what the adapter marks as image tokens, and the prefill's outcome."""

    layer: int
    keep: int | None
    reduction_ratio: float | None
    image_mask: torch.Tensor | None = None  # (B, L) image-token positions of the next prefill, set by the adapter
    kept_mask: torch.Tensor | None = None  # (B, L') padding mask of the kept sequence after prefill
    prompt_length: int = 0
    cache: object = None  # the cache the kept mask belongs to
    captured: dict = field(default_factory=dict)

    def budget(self, image_tokens: int) -> int:
        if self.reduction_ratio is not None:
            return keep_for_ratio(self.reduction_ratio, image_tokens)
        if self.keep > image_tokens:
            raise ValueError(f"fastv keep={self.keep} exceeds the {image_tokens} image tokens of a sample")
        return self.keep


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


class FastVForward:
    """Bound as `language_model.forward` while patched; see the module docstring."""

    def __init__(self, language_model: nn.Module, state: FastVState, handle) -> None:
        num_layers = len(language_model.layers)
        if not 1 <= state.layer < num_layers:
            raise ValueError(f"fastv layer={state.layer} must be in [1, {num_layers - 1}] for this {num_layers}-layer LLM")
        self.llm, self.state, self.handle = language_model, state, handle

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                 inputs_embeds=None, use_cache=None, **kwargs) -> BaseModelOutputWithPast:
        llm, state, config = self.llm, self.state, self.llm.config
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
        prefill = seen == 0 and state.image_mask is not None
        if prefill and state.image_mask.shape != (batch, length):
            raise ValueError(f"fastv: image-token mask {tuple(state.image_mask.shape)} does not match the sequence {(batch, length)}")

        hidden = inputs_embeds
        mask = create_causal_mask(config, hidden, attention_mask, past_key_values, position_ids)
        cos, sin = llm.rotary_emb(hidden, position_ids=position_ids)
        scored = llm.layers[state.layer - 1].self_attn
        hooks = [scored.q_proj.register_forward_hook(lambda m, i, o: state.captured.__setitem__("q", o)),
                 scored.k_proj.register_forward_hook(lambda m, i, o: state.captured.__setitem__("k", o))] if prefill else []
        try:
            for layer in llm.layers[: state.layer]:
                hidden = layer(hidden, attention_mask=mask, position_embeddings=(cos, sin), position_ids=position_ids,
                               past_key_values=past_key_values, use_cache=use_cache, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()

        if prefill:
            scores = last_token_attention(state.captured.pop("q"), state.captured.pop("k"), cos, sin, attention_mask, scored)
            index, kept_mask = self._select(scores, attention_mask)
            gather = index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
            hidden, position_ids = hidden.gather(1, gather), position_ids.gather(1, index)
            state.kept_mask, state.prompt_length, state.cache, state.image_mask = kept_mask, length, past_key_values, None
        elif seen and past_key_values is state.cache:
            kept_mask = torch.cat([state.kept_mask, attention_mask[:, state.prompt_length :]], dim=1)
        else:  # a call without images: nothing was pruned
            kept_mask = attention_mask
        upper = create_causal_mask(config, hidden, kept_mask, past_key_values, None, layer_idx=state.layer)
        cos, sin = llm.rotary_emb(hidden, position_ids=position_ids)
        for layer in llm.layers[state.layer :]:
            hidden = layer(hidden, attention_mask=upper, position_embeddings=(cos, sin), position_ids=position_ids,
                           past_key_values=past_key_values, use_cache=use_cache, **kwargs)
        return BaseModelOutputWithPast(last_hidden_state=llm.norm(hidden), past_key_values=past_key_values)

    def _select(self, scores: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: kept positions (all text, top image tokens), re-padded; and their padding mask."""
        state, image_mask = self.state, self.state.image_mask
        length = image_mask.shape[1]
        rows, selections, row_scores, kept_counts = [], [], [], []
        for row in range(image_mask.shape[0]):
            images = image_mask[row].nonzero().squeeze(-1)
            keep = state.budget(images.numel()) if images.numel() else 0
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
        self.handle.record(selections, row_scores)
        self.handle.last_visual_tokens = kept_counts
        self.handle.last_equivalent_visual_tokens = [
            (state.layer * int(mask.sum()) + (layers - state.layer) * kept) / layers
            for mask, kept in zip(image_mask, kept_counts)
        ]
        return index, kept_mask
