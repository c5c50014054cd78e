"""The decoder loop that in-LLM pruning methods (FastV, SparseVLM, FitPrune) share.

While a `PruningMethod` is applied, the Llama-style decoder's `forward` (transformers `LlamaModel`,
used by every backend) is replaced by `PruningForward`: the computation of `LlamaModel.forward`, run
in *stages* separated by the method's pruning layers.

Prefill (an empty cache and a call whose visual positions the adapter reported):

- The sequence enters stage 0 whole. After each pruning layer `l` has run (on the tokens it was
  given, so its KV cache holds all of them), the method is shown a `PruningPoint`: the sequence
  after layer `l`, the queries and keys layer `l` computed (captured by hooks on `q_proj`/`k_proj`,
  so the decoder keeps its sdpa/flash kernel) and the padding. It answers, per row, which positions
  go on to layer `l + 1` and, optionally, new visual tokens to insert after the row's last kept
  visual token (SparseVLM's recycled tokens). Layers after `l` only ever see, and cache, what it kept.
- Positions: a method keeps the survivors' original position ids, with gaps (`positions =
  "original"`, FastV and FitPrune), or renumbers each stage's sequence contiguously (`"renumbered"`,
  SparseVLM), in which case each stage's new tokens continue from its own last position.

Decoding: every stage attends over its own cache with its own padding mask (the one it kept at
prefill, extended by the generated tokens), at its own positions.

Batches: each row is pruned on its own and the rows are padded again on the side the caller padded.
The recorder gets, per row: the surviving original visual tokens, the method's scores, the final
visual-token count, the layer-averaged count and the count every decoder layer processed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

from .methods.base import LanguageModelMethod

TEXT = -1  # `Sequence.visual_index` of a text token
INSERTED = -2  # ... of a token a method inserted (a merged one)


@dataclass
class Sequence:
    """The prefill's current tokens, (B, L, ·), padded."""

    hidden: torch.Tensor  # (B, L, D)
    positions: torch.Tensor  # (B, L) position ids
    padding: torch.Tensor  # (B, L) 1 where attended
    visual_index: torch.Tensor  # (B, L) index among the row's original visual tokens; TEXT, INSERTED
    source: torch.Tensor  # (B, L) position in the prefill's input sequence; -1 for inserted tokens

    @property
    def visual(self) -> torch.Tensor:
        return (self.visual_index != TEXT) & self.padding.bool()

    def row(self, row: int) -> torch.Tensor:
        """The attended positions of `row`, in order."""
        return self.padding[row].nonzero().squeeze(-1)


@dataclass
class RowDecision:
    kept: torch.Tensor  # positions (ascending, in the padded row, padding included) that go on to the next layer
    inserted: torch.Tensor | None = None  # (m, D) new visual tokens, placed after the last kept visual token
    scores: torch.Tensor | None = None  # the method's scores over the row's visual tokens at this point


@dataclass
class PruningPoint:
    """What a method sees after pruning layer `layer` ran in prefill."""

    layer: int
    sequence: Sequence  # the hidden states are layer `layer`'s output
    queries: torch.Tensor  # (B, L, heads·head_dim) layer `layer`'s q_proj output, before RoPE
    keys: torch.Tensor  # (B, L, kv_heads·head_dim)
    cos: torch.Tensor
    sin: torch.Tensor
    attention: nn.Module  # the layer's self-attention module (head_dim, scaling, groups)
    state: dict = field(default_factory=dict)  # what the method's `begin` returned, for this prefill

    def attention_rows(self, row: int, queries: torch.Tensor, reduce: str | None = None,
                       heads_per_chunk: int = 8) -> torch.Tensor:
        """Post-softmax float32 attention of the given query positions of `row` over all L positions of
        the row (causal, padding masked), as layer `layer` computed it: (heads, R, L), or with `reduce`
        ("mean" or "max" over heads) (R, L), formed a few heads at a time so that R×L rows of every
        head never coexist (FitPrune asks for nearly all rows of a 3 000-token NeXT prompt)."""
        attention, head_dim = self.attention, self.attention.head_dim
        q = self.queries[row, queries].view(len(queries), -1, head_dim).transpose(0, 1)  # (H, R, hd)
        q = q * self.cos[row, queries] + rotate_half(q) * self.sin[row, queries]
        k = self.keys[row].view(self.keys.shape[1], -1, head_dim).transpose(0, 1)  # (kv, L, hd)
        k = k * self.cos[row] + rotate_half(k) * self.sin[row]
        k = repeat_kv(k[None], attention.num_key_value_groups)[0]
        length = k.shape[1]
        allowed = (torch.arange(length, device=q.device)[None] <= queries[:, None]) & self.sequence.padding[row].bool()[None]

        def probabilities(heads: slice) -> torch.Tensor:
            logits = torch.matmul(q[heads], k[heads].transpose(-1, -2)) * attention.scaling
            return logits.masked_fill(~allowed[None], torch.finfo(logits.dtype).min).softmax(dim=-1, dtype=torch.float32)

        if reduce is None:
            return probabilities(slice(None))
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce={reduce!r}: expected None, 'mean' or 'max'")
        result = None
        for start in range(0, q.shape[0], heads_per_chunk):
            chunk = probabilities(slice(start, start + heads_per_chunk))
            chunk = chunk.sum(dim=0) if reduce == "mean" else chunk.amax(dim=0)
            result = chunk if result is None else (result + chunk if reduce == "mean" else torch.maximum(result, chunk))
        return result / q.shape[0] if reduce == "mean" else result


class PruningMethod(LanguageModelMethod):
    """An LLM-stage method run by `PruningForward`: subclasses say where they prune and what they keep."""

    positions: str = "original"  # or "renumbered": see the module docstring

    def __init__(self) -> None:
        self.keep: int | None = None
        self.reduction_ratio: float | None = None
        self._forward: PruningForward | None = None

    def pruning_layers(self, num_layers: int) -> list[int]:
        """Decoder layers after which the method prunes (ascending)."""
        raise NotImplementedError

    def begin(self, sequence: Sequence) -> dict:
        """Per-prefill state computed from the input embeddings (`sequence.hidden`), before layer 0."""
        return {}

    def prune(self, point: PruningPoint) -> list[RowDecision]:
        raise NotImplementedError

    def equivalent_visual_tokens(self, processed: list[int]) -> float:
        """The layer-averaged count a table prints, from the visual tokens each layer processed."""
        return sum(processed) / len(processed)

    def check_language_model(self, language_model: nn.Module) -> None:
        layers = len(language_model.layers)
        for layer in self.pruning_layers(layers):
            if not 0 <= layer < layers - 1:
                raise ValueError(f"{self.name}: pruning after decoder layer {layer} needs a layer after it; "
                                 f"this LLM has {layers} layers (0..{layers - 1})")

    def attach(self, language_model: nn.Module, keep: int | None, reduction_ratio: float | None, recorder) -> None:
        self.keep, self.reduction_ratio = keep, reduction_ratio
        self._forward = PruningForward(self, language_model, recorder)
        language_model.forward = self._forward

    def detach(self) -> None:
        del self._forward.llm.forward
        self._forward = None

    def visual_positions(self, mask: torch.Tensor) -> None:
        self._forward.image_mask = mask


@dataclass
class _Stage:
    """Layers [start, stop) and the sequence they cached at prefill."""

    start: int
    stop: int
    padding: torch.Tensor  # (B, L_s) padding mask of the stage's prefill tokens
    next_position: torch.Tensor  # (B,) renumbered mode: the position the stage's next token takes


class PruningForward:
    """Bound as `language_model.forward` while a `PruningMethod` is applied; see the module docstring."""

    def __init__(self, method: PruningMethod, language_model: nn.Module, recorder) -> None:
        self.method, self.llm, self.recorder = method, language_model, recorder
        self.image_mask: torch.Tensor | None = None  # (B, L) visual positions of the next prefill (the adapter's)
        self.stages: list[_Stage] = []  # of the cache below
        self.prompt_length = 0
        self.cache = None

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                 inputs_embeds=None, use_cache=None, **kwargs) -> BaseModelOutputWithPast:
        llm, config = self.llm, self.llm.config
        if kwargs.get("output_attentions") or kwargs.get("output_hidden_states"):
            raise ValueError(f"{self.method.name} does not return attentions or hidden states")
        if inputs_embeds is None:
            inputs_embeds = llm.embed_tokens(input_ids)
        use_cache = config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=config)
        seen = past_key_values.get_seq_length() if past_key_values is not None else 0
        batch, length = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        if attention_mask is None:
            attention_mask = torch.ones(batch, seen + length, dtype=torch.long, device=device)
        if position_ids is None:
            position_ids = (torch.arange(length, device=device) + seen).expand(batch, -1)
        if seen == 0 and self.image_mask is not None:
            if self.image_mask.shape != (batch, length):
                raise ValueError(f"{self.method.name}: visual-token mask {tuple(self.image_mask.shape)} does not "
                                 f"match the sequence {(batch, length)}")
            hidden = self._prefill(inputs_embeds, attention_mask, position_ids, past_key_values, use_cache, kwargs)
        else:
            stages = self.stages if seen and past_key_values is self.cache else None
            hidden = self._continue(inputs_embeds, attention_mask, position_ids, past_key_values, use_cache, stages,
                                    seen, kwargs)
        return BaseModelOutputWithPast(last_hidden_state=llm.norm(hidden), past_key_values=past_key_values)

    def _run(self, layers: range, hidden, padding, positions, cache, use_cache, kwargs, first: bool):
        """Layers `layers` over `hidden` with a padding mask and positions; returns the hidden states and
        the rotary (cos, sin) they used."""
        llm = self.llm
        if first:  # the stage the caller's sequence enters: its own positions decide packed-sequence detection
            mask = create_causal_mask(llm.config, hidden, padding, cache, positions)
        else:
            mask = create_causal_mask(llm.config, hidden, padding, cache, None, layer_idx=layers.start)
        cos, sin = llm.rotary_emb(hidden, position_ids=positions)
        for index in layers:
            hidden = llm.layers[index](hidden, attention_mask=mask, position_embeddings=(cos, sin),
                                       position_ids=positions, past_key_values=cache, use_cache=use_cache, **kwargs)
        return hidden, cos, sin

    def _prefill(self, embeds, attention_mask, position_ids, cache, use_cache, kwargs) -> torch.Tensor:
        method, layers = self.method, len(self.llm.layers)
        batch, length = embeds.shape[:2]
        padding = attention_mask[:, -length:]
        image_mask = self.image_mask & padding.bool()
        visual_index = torch.full((batch, length), TEXT, dtype=torch.long, device=embeds.device)
        for row in range(batch):
            positions = image_mask[row].nonzero().squeeze(-1)
            visual_index[row, positions] = torch.arange(positions.numel(), device=embeds.device)
        sequence = Sequence(embeds, position_ids.expand(batch, -1), padding,
                            visual_index, torch.arange(length, device=embeds.device).expand(batch, -1))
        state = method.begin(sequence)
        unpruned = [int(count) for count in image_mask.sum(dim=1)]
        processed: list[list[int]] = [[] for _ in range(batch)]
        scores: list[torch.Tensor | None] = [None] * batch
        pad_left = bool((attention_mask[:, -1] == 1).all())
        self.stages, start = [], 0
        for stop in [layer + 1 for layer in method.pruning_layers(layers)] + [layers]:
            counts = [int(count) for count in sequence.visual.sum(dim=1)]
            for row in range(batch):
                processed[row] += [counts[row]] * (stop - start)
            self.stages.append(_Stage(start, stop, sequence.padding, sequence.positions.max(dim=1).values + 1))
            if stop == layers:
                hidden, _, _ = self._run(range(start, stop), sequence.hidden, sequence.padding, sequence.positions,
                                         cache, use_cache, kwargs, first=start == 0)
                break
            attention = self.llm.layers[stop - 1].self_attn
            captured: dict[str, torch.Tensor] = {}
            hooks = [attention.q_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("q", o)),
                     attention.k_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("k", o))]
            try:
                hidden, cos, sin = self._run(range(start, stop), sequence.hidden, sequence.padding, sequence.positions,
                                             cache, use_cache, kwargs, first=start == 0)
            finally:
                for hook in hooks:
                    hook.remove()
            sequence.hidden = hidden
            point = PruningPoint(stop - 1, sequence, captured["q"], captured["k"], cos, sin, attention, state)
            decisions = method.prune(point)
            for row, decision in enumerate(decisions):
                if scores[row] is None and decision.scores is not None:
                    scores[row] = decision.scores
            sequence = self._assemble(sequence, decisions, pad_left)
            start = stop
        self.prompt_length, self.cache, self.image_mask = length, cache, None
        self._record(sequence, scores, processed, unpruned)
        return hidden

    def _assemble(self, sequence: Sequence, decisions: list[RowDecision], pad_left: bool) -> Sequence:
        """The next stage's sequence: each row's kept positions (padding included) and inserted tokens,
        padded again on the caller's side."""
        names = ("hidden", "positions", "padding", "visual_index", "source")
        rows = []
        for row, decision in enumerate(decisions):
            kept = decision.kept
            parts = {name: getattr(sequence, name)[row, kept] for name in names}
            inserted = decision.inserted
            if inserted is not None and len(inserted):
                visual = (parts["visual_index"] != TEXT).nonzero()
                at = int(visual[-1]) + 1 if len(visual) else 0
                count = inserted.shape[0]
                fill = {"hidden": inserted.to(parts["hidden"].dtype),
                        "positions": parts["positions"].new_zeros(count),
                        "padding": parts["padding"].new_ones(count),
                        "visual_index": parts["visual_index"].new_full((count,), INSERTED),
                        "source": parts["source"].new_full((count,), -1)}
                parts = {name: torch.cat([value[:at], fill[name], value[at:]]) for name, value in parts.items()}
            if self.method.positions == "renumbered":
                attended = sequence.row(row)
                first = sequence.positions[row, attended[0]] if len(attended) else 0
                parts["positions"] = (parts["padding"].long().cumsum(0) - 1).clamp(min=0) + first
            rows.append(parts)
        width = max(len(parts["source"]) for parts in rows)
        batch, device = len(rows), sequence.hidden.device
        result = Sequence(
            sequence.hidden.new_zeros(batch, width, sequence.hidden.shape[-1]),
            torch.zeros(batch, width, dtype=torch.long, device=device),
            torch.zeros(batch, width, dtype=sequence.padding.dtype, device=device),
            torch.full((batch, width), TEXT, dtype=torch.long, device=device),
            torch.full((batch, width), -1, dtype=torch.long, device=device),
        )
        for row, parts in enumerate(rows):
            size = len(parts["source"])
            span = slice(width - size, width) if pad_left else slice(0, size)
            for name, value in parts.items():
                getattr(result, name)[row, span] = value
        return result

    def _record(self, sequence: Sequence, scores: list, processed: list[list[int]], unpruned: list[int]) -> None:
        selections, final_counts = [], []
        for row in range(sequence.hidden.shape[0]):
            index = sequence.visual_index[row][sequence.padding[row].bool()]
            selections.append(index[index >= 0].sort().values)
            final_counts.append(int((index != TEXT).sum()))
        scores = [s if s is not None else torch.zeros(n, device=sequence.hidden.device) for s, n in zip(scores, unpruned)]
        self.recorder.record(selections, scores, final_counts,
                             [self.method.equivalent_visual_tokens(counts) for counts in processed],
                             layer_visual_tokens=processed)

    def _continue(self, embeds, attention_mask, position_ids, cache, use_cache, stages, seen, kwargs) -> torch.Tensor:
        """A call after a pruned prefill (decoding: each stage over its own cache), or one without images."""
        layers = len(self.llm.layers)
        if stages is None:
            hidden, _, _ = self._run(range(layers), embeds, attention_mask, position_ids, cache, use_cache, kwargs,
                                     first=True)
            return hidden
        hidden, length = embeds, embeds.shape[1]
        generated = attention_mask[:, self.prompt_length:]
        for index, stage in enumerate(stages):
            padding = torch.cat([stage.padding, generated], dim=1)
            if self.method.positions == "renumbered":
                offset = seen - self.prompt_length
                positions = stage.next_position[:, None] + offset + torch.arange(length, device=embeds.device)
            else:
                positions = position_ids
            hidden, _, _ = self._run(range(stage.start, stage.stop), hidden, padding, positions, cache, use_cache,
                                     kwargs, first=False)
        return hidden
