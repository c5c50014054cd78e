"""The [CLS] query's attention row, computed beside a fused (sdpa/flash) attention kernel.

FasterVLM and VTC-CLS need only softmax(q_cls · Kᵀ / √d_head) per head from the scored layer(s).
The reference code asks the whole tower for `output_attentions=True`, which forces eager attention in
every layer and materialises (B, heads, 1+P, 1+P) maps. Here forward hooks on the layer's own q/k
projections catch their outputs (computed from the layer-normed input anyway), and the row is
formed from them: (B, heads, 1+P) extra numbers per layer, no change to the attention kernel. The
encoder adapter (`llava_patch.encoders`) says where a family keeps those projections.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .encoders.base import LayerAttention


def cls_attention_row(queries: torch.Tensor, keys: torch.Tensor, num_heads: int, scale: float) -> torch.Tensor:
    """Head-mean post-softmax attention of query 0 over all keys.

    queries: (B, 1, D) projected [CLS] query; keys: (B, N, D) projected keys.
    Returns (B, N) float32. The product runs in the keys' dtype and the softmax in float32, as
    transformers' eager attention does.
    """
    batch, length, dim = keys.shape
    head_dim = dim // num_heads
    q = queries.reshape(batch, 1, num_heads, head_dim).transpose(1, 2)  # (B, H, 1, hd)
    k = keys.reshape(batch, length, num_heads, head_dim).transpose(1, 2)  # (B, H, N, hd)
    logits = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, 1, N)
    return logits.softmax(dim=-1, dtype=torch.float32).mean(dim=1).squeeze(1)


@contextmanager
def record_cls_attention(
    attentions: dict[int, LayerAttention], keep_projections: frozenset[int] = frozenset()
) -> Iterator[tuple[dict[int, torch.Tensor], dict[int, tuple[torch.Tensor, torch.Tensor]]]]:
    """While active, every forward of the given attention modules records its [CLS] row.

    attentions: layer index → that layer's attention (`Encoder.attention(index)`). Yields
    (rows, projections): rows fills with layer index → (B, 1+P) float32 rows (the [CLS]→[CLS] entry
    included; callers drop column 0); for the layers in `keep_projections`, projections also keeps
    the raw ([CLS] query (B, 1, C), keys (B, 1+P, C)).
    """
    rows: dict[int, torch.Tensor] = {}
    projections: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for layer, attention in attentions.items():
        projected: dict[str, torch.Tensor] = {}

        def keep_query(_module, _inputs, output, projected=projected):
            projected["q"] = output[:, :1]

        def keep_keys(_module, _inputs, output, projected=projected):
            projected["k"] = output

        def finish(_module, _inputs, _output, projected=projected, layer=layer, attention=attention):
            query, keys = projected.pop("q"), projected.pop("k")
            rows[layer] = cls_attention_row(query, keys, attention.num_heads, attention.scale)
            if layer in keep_projections:
                projections[layer] = (query, keys)

        hooks += [
            attention.query.register_forward_hook(keep_query),
            attention.key.register_forward_hook(keep_keys),
            attention.module.register_forward_hook(finish),
        ]
    try:
        yield rows, projections
    finally:
        for hook in hooks:
            hook.remove()
