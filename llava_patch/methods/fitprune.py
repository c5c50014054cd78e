"""FitPrune (Ye et al., 2024; arXiv 2409.10197): delete visual tokens inside the LLM by a per-layer recipe.

A recipe (`llava_patch.fitprune_recipe`) says how many visual tokens each decoder layer deletes; it
is fitted on calibration data to meet a FLOPs-reduction target (`llava-patch fitprune-recipe`,
docs/fitprune.md) or is one the authors published for LLaVA-1.5-7B. Followed: ywh187/FitPrune at
d28e418, `LLaVA_1.5/llava/model/language_model/modeling_llama.py`. In prefill, at every layer l with
`delete[l] > 0` (lines 357–406, 496–498, 805–812), with A = that layer's attention probabilities,
**max over heads**, and the current n visual tokens:

    self[j]  = Σ_{visual queries i} A[i, j] / n          (how much the image attends to token j)
    cross[j] = Σ_{queries after the image} A[i, j]        (how much the text attends to it; not normalised)

the `delete[l]` visual tokens with the lowest cross·self leave after layer l's attention (they are
queries and keys in it, and its KV cache keeps them; its output projection, MLP and every later
layer never see them — dropping them after the layer gives the same kept outputs). Survivors keep
their original position ids (gaps); decoding continues from the unpruned prompt length.

Budget: the FLOPs-reduction target of the recipe, as `reduction_ratio`, or as `keep` =
round(N·(1 − target)) (FasterVLM's "# Token" column prints it so). Without `recipe`, the authors'
published recipe for that ratio is used (0, 10, 20, 30, 40, 50, 55, 60, 70, 80, 90 %; LLaVA-1.5-7B).

Differences from the authors' code, none of which changes a result on one image at batch size 1:
they hard-code the image at positions 35..35+n with n starting at 576 and select the recipe by an
integer percentage; here the visual tokens are wherever the adapter reports them (all of a sample's
crops or frames ranked jointly), each row of a batch is pruned on its own, and the attention rows
are computed from the layer's q/k in float32 (they use eager fp16 attention), so the decoder keeps
sdpa/flash. Their sort is not stable; ties are broken by position here.
"""

from __future__ import annotations

import torch
from torch import nn

from ..budget import keep_for_ratio
from ..fitprune_recipe import Recipe, load_recipe, published_ratios, published_recipe
from ..llm_pruning import PruningMethod, PruningPoint, RowDecision
from ..registry import register_method


@register_method("fitprune")
class FitPrune(PruningMethod):
    needs_recipe = True

    def __init__(self, recipe: str | None = None) -> None:
        super().__init__()
        self.recipe_path = recipe
        self.recipe: Recipe | None = load_recipe(recipe) if recipe is not None else None

    def check_llm_budget(self, keep: int | None, reduction_ratio: float | None) -> None:
        if self.recipe is not None:
            target = self.recipe.flops_reduction_target
            tokens = self.recipe.visual_tokens
            if reduction_ratio is not None and abs(reduction_ratio - target) > 1e-9:
                raise ValueError(f"fitprune: reduction_ratio={reduction_ratio} but the recipe {self.recipe_path} "
                                 f"was fitted for a FLOPs reduction of {target}")
            if keep is not None and keep != keep_for_ratio(target, tokens):
                raise ValueError(f"fitprune: keep={keep} but the recipe {self.recipe_path} was fitted for a FLOPs "
                                 f"reduction of {target} (keep={keep_for_ratio(target, tokens)} of {tokens})")
            return
        ratios = published_ratios()
        matching = [r for r in ratios if (r == reduction_ratio if keep is None else keep_for_ratio(r, 576) == keep)]
        if not matching:
            given = f"keep={keep}" if keep is not None else f"reduction_ratio={reduction_ratio}"
            raise ValueError(f"fitprune: {given} has no published recipe (the authors publish LLaVA-1.5-7B recipes for "
                             f"reduction ratios {', '.join(f'{r:g}' for r in ratios)}); fit one with "
                             "`llava-patch fitprune-recipe` and pass recipe=FILE")
        self.recipe = published_recipe(matching[0])

    def check_language_model(self, language_model: nn.Module) -> None:
        if self.recipe is not None:
            self.recipe.check_layers(len(language_model.layers))

    def pruning_layers(self, num_layers: int) -> list[int]:
        # a deletion after the last layer changes nothing (no later layer reads those tokens)
        return [layer for layer, count in enumerate(self.recipe.delete) if count and layer < num_layers - 1]

    def tokens_kept(self, visual_tokens: int) -> int:
        return max(0, visual_tokens - sum(self.recipe.delete[: len(self.recipe.delete) - 1]))

    def layer_schedule(self, visual_tokens: int, num_layers: int) -> list[int]:
        """Each layer's input; the layer runs whole on it (its deletions leave after it)."""
        counts, left, pruning = [], visual_tokens, self.pruning_layers(num_layers)
        for layer in range(num_layers):
            counts.append(left)
            if layer in pruning:
                left = max(0, left - self.recipe.delete[layer])
        return counts

    def prune(self, point: PruningPoint) -> list[RowDecision]:
        sequence, count = point.sequence, self.recipe.delete[point.layer]
        decisions = []
        for row in range(sequence.hidden.shape[0]):
            visual = sequence.visual[row].nonzero().squeeze(-1)
            everything = torch.ones_like(sequence.padding[row], dtype=torch.bool)
            if not len(visual):
                decisions.append(RowDecision(everything.nonzero().squeeze(-1)))
                continue
            attended = sequence.row(row)
            after = attended[attended > visual[-1]]
            attention = point.attention_rows(row, torch.cat([visual, after]), reduce="max")[:, visual]
            self_score = (attention[: len(visual)] / len(visual)).sum(dim=0)
            cross_score = attention[len(visual):].sum(dim=0)
            score = cross_score * self_score
            deleted = visual[torch.sort(score, stable=True).indices[:count]]
            everything[deleted] = False
            decisions.append(RowDecision(everything.nonzero().squeeze(-1), scores=score))
        return decisions

