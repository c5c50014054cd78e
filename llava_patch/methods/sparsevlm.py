"""SparseVLM (Zhang et al., 2024; arXiv 2410.04417), the version FasterVLM compared against.

It prunes visual tokens inside the LLM at several decoder layers, guided by the attention that
selected text tokens ("raters") pay to them, and recycles part of what it drops. Followed: the
authors' first public code, Gumpest/SparseVLMs at commit b72c5d6 (2024-10-22; the code is unchanged
since 91fb6d9, 2024-10-05), `llava/model/language_model/modelling_sparse_llama.py`
(`LlamaDynamicvitModel.forward`), `score.py` and `utils.py`. Per sample:

1. Raters (once, from the input embeddings): with V the visual and T the text embeddings after the
   image, softmax over text of V·Tᵀ, mean over visual tokens → one value per text token; the text
   tokens above the mean are the raters (modelling_sparse_llama.py lines 214–220).
2. After each pruning layer l (`layers`; default 2, 6, 15, 19, the authors' for LLaVA-1.5-7B and, as
   their code fixes them, for 13B's 40 layers too; an LLM of 20 layers or fewer gets the same
   fractions of 32 layers, e.g. 0, 1, 2 of 4): R = that layer's
   attention (mean over heads) from the raters to the current visual tokens, (raters × visual). With
   r = rank(R) (`torch.linalg.matrix_rank`) and V visual tokens: if r < V, keep the top
   min(int(r·scale + bias), V − 1) visual tokens by R's mean over raters (in order), else keep all
   (score.py lines 23–43: rank at 32, the count at 38).
3. Recycling (only when it pruned): of the dropped tokens, the 30 % (+1) with the highest score are
   clustered (density-peak clustering, `int(n/10) + 1` clusters, the cluster count also being its
   k-nearest-neighbour count) and each cluster's mean (layer l's output) is inserted right after
   the kept visual tokens; later pruning layers treat these as visual tokens (lines 252–283: 30 % at
   258, clusters at 262; `utils.cluster_and_merge` line 155).
4. Layers after l see only what was kept; the sequence is renumbered contiguously (the authors cut
   `position_ids` to the new length, lines 278 and 287), and while decoding each layer's new token
   takes that layer's own cache length as its position (`get_usable_length(…, layer_idx)`, lines
   602–603) — both change results against keeping the original positions.

Budget: `scale` and `bias` are the authors' knobs; the resulting token count depends on the sample.
The count their code prints (and FasterVLM's "# Token" column reports for SparseVLM) is the mean
over layers of the visual tokens *after* each layer's pruning (`equivalent_visual_tokens`; lines 331,
334–336). A `keep`
without `scale` takes the authors' published LLaVA-1.5-7B setting for 192/128/64 tokens (their
README at b72c5d6): 13.5/0, 9/6, 0.8/0. Other counts (FasterVLM's rows: 432/288/144/58, LLaVA-NeXT's
2160/1440/720/290) need settings calibrated on the model: `settings=FILE`, written by `llava-patch
sparsevlm-calibrate` (`llava_patch.calibration.sparsevlm`: the scale, bias fixed, at which the mean
layer-averaged count over calibration questions meets `keep`), gives its scale and bias; `keep` must
be the file's target, the LLM must have the file's layer count and `layers` must be the file's, and
`settings` excludes `scale`/`bias`. `keep` stays nominal: the count reached depends on the sample.

Differences from the authors' code, none of which changes a result: it runs at batch size 1 only
and hard-codes one image per prompt, 576 visual tokens and the 664-token prompt; here each row of a
batch is pruned on its own, all of a sample's visual tokens (crops, frames) are ranked jointly, and
the attention rows are computed from the pruning layer's q/k (so the decoder keeps sdpa/flash).
The clustering's tie-breaking noise (`torch.rand · 1e-6` on the density, `utils.py` line 166) is
drawn from a generator seeded with `seed` for every sample at every prefill, so results are
repeatable and a sample's clustering does not depend on its batch. It is not always negligible: where
the densities exp(−mean d²) underflow (far-apart tokens), the noise alone picks the cluster centres.
"""

from __future__ import annotations

import torch

from ..budget import keep_for_ratio
from ..registry import register_method
from ..llm_pruning import PruningMethod, PruningPoint, RowDecision, Sequence

AUTHORS_LAYERS = (2, 6, 15, 19)  # `LlamaDynamicvitModel.__init__(pruning_loc=...)`, for any depth
PUBLISHED_SETTINGS = {192: (13.5, 0.0), 128: (9.0, 6.0), 64: (0.8, 0.0)}  # LLaVA-1.5-7B, keep → (scale, bias)
RECYCLED_FRACTION = 0.3  # of the dropped tokens, the best-rated 30 % (+1) are clustered
TOKENS_PER_CLUSTER = 10


@register_method("sparsevlm")
class SparseVLM(PruningMethod):
    positions = "renumbered"
    variable_count = True
    budgets = tuple(PUBLISHED_SETTINGS)  # without scale and bias; with them, keep is the nominal target

    def __init__(self, layers: tuple[int, ...] | None = None, scale: float | None = None,
                 bias: float | None = None, seed: int = 0, settings: str | None = None) -> None:
        super().__init__()
        if layers is not None:
            layers = tuple(layers)
            if not layers or any(isinstance(l, bool) or not isinstance(l, int) for l in layers) or list(layers) != sorted(set(layers)):
                raise ValueError(f"sparsevlm: layers must be ascending distinct decoder layer indices, got {layers!r}")
        self.settings_path, self.calibrated = settings, None
        if settings is not None:
            if scale is not None or bias is not None:
                raise ValueError(f"sparsevlm: settings={settings} gives scale and bias; pass settings or scale and "
                                 "bias, not both")
            from ..sparsevlm_settings import load_sparsevlm_settings

            self.calibrated = load_sparsevlm_settings(settings)
            calibrated_layers = self.calibrated.layers_option
            if (list(layers) if layers is not None else None) != calibrated_layers:
                raise ValueError(f"sparsevlm: the settings {settings} were calibrated with layers="
                                 f"{calibrated_layers if calibrated_layers is not None else 'default'}; got layers="
                                 f"{list(layers) if layers is not None else 'default'}")
            scale, bias = self.calibrated.scale, self.calibrated.bias
        if (scale is None) != (bias is None):
            raise ValueError("sparsevlm: give both scale and bias, or neither (then keep picks a published setting)")
        self.layers, self.scale, self.bias, self.seed = layers, scale, bias, seed

    def pruning_layers(self, num_layers: int) -> list[int]:
        if self.layers is not None:
            return list(self.layers)
        if num_layers > AUTHORS_LAYERS[-1] + 1:  # the authors use these on every LLaVA (32 and 40 layers)
            return list(AUTHORS_LAYERS)
        # a shallower LLM (the toy's, the tests'): the same fractions of a 32-layer LLM
        return sorted({min(round(layer * num_layers / 32), num_layers - 2) for layer in AUTHORS_LAYERS})

    def check_llm_budget(self, keep: int | None, reduction_ratio: float | None) -> None:
        if self.calibrated is not None:
            target = self.calibrated.keep
            if keep != target:
                given = f"keep={keep}" if keep is not None else f"reduction_ratio={reduction_ratio}"
                raise ValueError(f"sparsevlm: {given} but the settings {self.settings_path} were calibrated for "
                                 f"keep={target} (layer-averaged visual tokens); pass keep={target} or calibrate "
                                 f"settings for this budget with `llava-patch sparsevlm-calibrate`")
            return
        if self.scale is None and keep not in PUBLISHED_SETTINGS:
            given = f"keep={keep}" if keep is not None else f"reduction_ratio={reduction_ratio}"
            raise ValueError(f"sparsevlm: {given} has no published scale/bias (the authors publish keep = "
                             f"{', '.join(map(str, PUBLISHED_SETTINGS))} for LLaVA-1.5-7B); pass scale= and bias=, "
                             "or settings=FILE from `llava-patch sparsevlm-calibrate`")

    def check_language_model(self, language_model) -> None:
        super().check_language_model(language_model)
        expected = self.calibrated.model.get("layers") if self.calibrated is not None else None
        if expected is not None and expected != len(language_model.layers):
            raise ValueError(f"sparsevlm: the settings {self.settings_path} were calibrated on a language model of "
                             f"{expected} layers ({self.calibrated.model.get('name') or self.calibrated.model.get('source')}); "
                             f"this one has {len(language_model.layers)}")

    def settings(self) -> tuple[float, float]:
        return (self.scale, self.bias) if self.scale is not None else PUBLISHED_SETTINGS[self.keep]

    def tokens_kept(self, visual_tokens: int) -> int:
        """The target layer-averaged count (the budget); the count reached depends on the sample."""
        return keep_for_ratio(self.reduction_ratio, visual_tokens) if self.reduction_ratio is not None else self.keep

    def equivalent_visual_tokens(self, processed: list[int]) -> float:
        # The authors count, for every layer, the visual tokens left *after* it (so a pruning layer
        # counts what it kept, not what it processed), and average over layers.
        after = processed[1:] + processed[-1:]
        return sum(after) / len(after)

    def begin(self, sequence: Sequence) -> dict:
        raters = []
        for row in range(sequence.hidden.shape[0]):
            attended = sequence.row(row)
            visual = sequence.visual[row]
            first_visual = int(visual.nonzero()[0]) if visual.any() else len(visual)
            text = attended[(attended > first_visual) & ~visual[attended]]
            embeds = sequence.hidden[row]
            relevance = (embeds[visual] @ embeds[text].T).softmax(dim=1).mean(dim=0)  # per text token
            raters.append(sequence.source[row, text[relevance > relevance.mean()]])
        # one noise stream per row, so that a sample gets the same clustering alone or in any batch
        generators = [torch.Generator(device=sequence.hidden.device).manual_seed(self.seed) for _ in raters]
        return {"raters": raters, "generators": generators}

    def prune(self, point: PruningPoint) -> list[RowDecision]:
        sequence, scale, bias = point.sequence, *self.settings()
        decisions = []
        for row in range(sequence.hidden.shape[0]):
            visual = sequence.visual[row].nonzero().squeeze(-1)
            raters = torch.isin(sequence.source[row], point.state["raters"][row]).nonzero().squeeze(-1)
            everything = torch.ones_like(sequence.padding[row], dtype=torch.bool).nonzero().squeeze(-1)
            if not len(visual) or not len(raters):
                decisions.append(RowDecision(everything))
                continue
            relation = point.attention_rows(row, raters).mean(dim=0)[:, visual]  # (raters, visual)
            rank = int(torch.linalg.matrix_rank(relation.float()))
            score = relation.mean(dim=0)
            if rank == len(visual):
                decisions.append(RowDecision(everything, scores=score))
                continue
            count = max(0, min(int(rank * scale + bias), len(visual) - 1))
            kept_visual = torch.zeros(len(visual), dtype=torch.bool, device=visual.device)
            kept_visual[score.topk(count).indices] = True
            dropped = visual[~kept_visual]
            recycled = score[~kept_visual].topk(int(len(dropped) * RECYCLED_FRACTION) + 1).indices
            merged = cluster_and_merge(sequence.hidden[row, dropped[recycled]],
                                       int(len(recycled) / TOKENS_PER_CLUSTER) + 1, point.state["generators"][row])
            kept = torch.ones_like(sequence.padding[row], dtype=torch.bool)
            kept[dropped] = False
            decisions.append(RowDecision(kept.nonzero().squeeze(-1), inserted=merged, scores=score))
        return decisions


def cluster_and_merge(tokens: torch.Tensor, clusters: int, generator: torch.Generator) -> torch.Tensor:
    """(clusters, D) means of `tokens` (n, D) grouped by density-peak clustering (DPC-kNN, k = clusters),
    the way SparseVLM's `utils.cluster_and_merge` groups them."""
    count, dim = tokens.shape
    distance = (tokens[:, None] - tokens[None]).norm(dim=-1, p=2) / dim ** 0.5  # (n, n)
    nearest = distance.topk(clusters, dim=-1, largest=False).values
    density = (-(nearest ** 2).mean(dim=-1)).exp()
    density = density + torch.rand(density.shape, generator=generator, device=density.device, dtype=density.dtype) * 1e-6
    denser = (density[None, :] > density[:, None]).to(tokens.dtype)  # [i, j]: j is denser than i
    farthest = distance.max()
    parent_distance = (distance * denser + farthest * (1 - denser)).min(dim=-1).values
    centres = (parent_distance * density).topk(clusters).indices
    assignment = distance[centres].argmin(dim=0)  # (n,) nearest centre of every token
    assignment[centres] = torch.arange(clusters, device=tokens.device)
    members = torch.zeros(clusters, 1, dtype=tokens.dtype, device=tokens.device)
    members.index_add_(0, assignment, torch.ones(count, 1, dtype=tokens.dtype, device=tokens.device))
    weights = 1 / (members + 1e-6)[assignment]
    merged = torch.zeros(clusters, dim, dtype=tokens.dtype, device=tokens.device)
    return merged.index_add_(0, assignment, tokens * weights)
