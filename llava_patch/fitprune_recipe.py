"""FitPrune recipes: how many visual tokens each decoder layer deletes, in a JSON file.

A recipe is what FitPrune's statistical analysis (`llava_patch.calibration.fitprune`) fits on a
calibration set to meet a FLOPs-reduction target, and what its in-LLM pruning reads: `delete[l]`
visual tokens are deleted after the attention of decoder layer `l` (they take part in that layer's
attention, as queries and keys, and leave before its output projection and MLP). An image of N visual
tokens therefore reaches layer `l`'s attention with `N − sum(delete[:l])` of them (`schedule`).

The pruning method (`llava_patch.methods.fitprune`) and the fitting (`llava_patch.calibration.fitprune`) both read it.

File format (`FORMAT`, version 1), one JSON object:

    format, format_version              "llava_patch.fitprune_recipe", 1
    method                              "fitprune"
    delete                              [int, ...] one per decoder layer
    flops_reduction_target              the FLOPs reduction the recipe was fitted for, in [0, 1)
    visual_tokens                       N, the visual tokens per image it was fitted on
    layer_mean_visual_tokens            mean over layers of schedule(N): the layer-averaged count
    layer_mean_visual_tokens_after_deletion   the same for the tokens leaving each layer (o_proj/MLP)
    flops_reduction_forecast            1 − FLOPs(recipe)/FLOPs(N tokens), by FitPrune's formula
    model                               {name, source, backend, layers, hidden_size, intermediate_size,
                                         visual_tokens, fingerprint, dtype}
    calibration                         {file, sha256, samples, question_ids, image_folder,
                                         limit, image_start, prompt} or null (unknown: the published recipes)
    fitting                             {alpha, reached, tolerance, algorithm, trials: [...],
                                         weight_sums_mean} or null
    source                              where a transcribed recipe comes from, or null
    versions, date, device, command     provenance (null where unknown)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .fitted_files import check_format, read_fitted, write_new

FORMAT = "llava_patch.fitprune_recipe"
FORMAT_VERSION = 1
PUBLISHED_FILE = "fitprune_llava-1.5-7b.json"  # in llava_patch/methods/data/


class RecipeError(ValueError):
    """A recipe file (or published entry) that cannot be used; the message names the file and the field."""


# FitPrune's FLOPs count (statistical_analysis.py `rest_flops`/`calculate_origin_flops`), per image:
# only visual tokens are counted; a layer costs 3nd² (q, k, v) + 2n²d (QKᵀ and AV) on the n tokens its
# attention sees, and nd² (o) + 3dmn (SwiGLU MLP) on the tokens left after its deletion.
def attention_flops(tokens: int, hidden: int) -> int:
    return 3 * tokens * hidden * hidden + 2 * tokens * tokens * hidden


def output_flops(tokens: int, hidden: int, intermediate: int) -> int:
    return tokens * hidden * hidden + 3 * intermediate * hidden * tokens


def full_layer_flops(tokens: int, hidden: int, intermediate: int) -> int:
    return attention_flops(tokens, hidden) + output_flops(tokens, hidden, intermediate)


def recipe_flops(delete: list[int], visual_tokens: int, hidden: int, intermediate: int) -> int:
    """FitPrune's count for one image of `visual_tokens` tokens pruned by `delete`."""
    total, tokens = 0, visual_tokens
    for count in delete:
        total += attention_flops(tokens, hidden)
        tokens = max(tokens - count, 0)
        total += output_flops(tokens, hidden, intermediate)
    return total


@dataclass
class Recipe:
    """A FitPrune recipe. `delete[l]`: visual tokens deleted after decoder layer l's attention."""

    delete: list[int]
    flops_reduction_target: float
    visual_tokens: int
    model: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    fitting: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    date: str | None = None
    device: str | None = None
    command: str | None = None
    path: str | None = None  # the file it was read from (not written)

    @property
    def layers(self) -> int:
        return len(self.delete)

    def schedule(self, visual_tokens: int | None = None) -> list[int]:
        """Visual tokens each decoder layer's attention sees (queries and keys; its KV cache holds them)
        for an image of `visual_tokens` tokens (default: the recipe's own N)."""
        tokens = self.visual_tokens if visual_tokens is None else visual_tokens
        self._check_tokens(tokens)
        seen = []
        for count in self.delete:
            seen.append(tokens)
            tokens -= count
        return seen

    def schedule_after_deletion(self, visual_tokens: int | None = None) -> list[int]:
        """Visual tokens each layer's output projection and MLP see (and the next layer receives)."""
        return [seen - count for seen, count in zip(self.schedule(visual_tokens), self.delete)]

    def layer_mean_visual_tokens(self, visual_tokens: int | None = None) -> float:
        """The layer-averaged visual-token count (mean of `schedule`), the "# Token" of in-LLM methods."""
        seen = self.schedule(visual_tokens)
        return sum(seen) / len(seen)

    def flops_reduction(self, visual_tokens: int | None = None, hidden: int | None = None,
                        intermediate: int | None = None) -> float:
        """1 − FLOPs(pruned)/FLOPs(unpruned) by FitPrune's visual-token FLOPs count (default: the
        recipe's model sizes)."""
        tokens = self.visual_tokens if visual_tokens is None else visual_tokens
        hidden = hidden or self.model.get("hidden_size")
        intermediate = intermediate or self.model.get("intermediate_size")
        if not hidden or not intermediate:
            raise RecipeError(f"{self._where()}: model.hidden_size/intermediate_size unknown; pass them")
        self._check_tokens(tokens)
        origin = full_layer_flops(tokens, hidden, intermediate) * self.layers
        return 1.0 - recipe_flops(self.delete, tokens, hidden, intermediate) / origin

    def check_layers(self, num_layers: int) -> None:
        """Raise RecipeError unless the recipe has one entry per decoder layer of a `num_layers`-layer LLM."""
        if num_layers != self.layers:
            raise RecipeError(f"{self._where()}: field 'delete' has {self.layers} entries (layers) but the "
                              f"language model has {num_layers} decoder layers")

    def check_visual_tokens(self, visual_tokens: int) -> None:
        """Raise RecipeError when an image of `visual_tokens` tokens cannot lose sum(delete) of them."""
        self._check_tokens(visual_tokens)

    def _check_tokens(self, tokens: int) -> None:
        if tokens < sum(self.delete):
            raise RecipeError(f"{self._where()}: field 'delete' removes {sum(self.delete)} visual tokens but the "
                              f"image has only {tokens}")

    def _where(self) -> str:
        return self.path or (f"published FitPrune recipe {self.flops_reduction_target:g}" if self.source else "recipe")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "method": "fitprune",
            "delete": data.pop("delete"), "flops_reduction_target": data.pop("flops_reduction_target"),
            "visual_tokens": data.pop("visual_tokens"),
            "layer_mean_visual_tokens": self.layer_mean_visual_tokens(),
            "layer_mean_visual_tokens_after_deletion": sum(self.schedule_after_deletion()) / self.layers,
            "flops_reduction_forecast": self.flops_reduction() if self.model.get("hidden_size") else None,
            **data,
        }

    def save(self, path: str | Path) -> Path:
        """Write the recipe to a new file (an existing one is never overwritten)."""
        return write_new(path, self.to_dict(), "the recipe is")


_OPTIONAL = ("model", "calibration", "fitting", "source", "versions", "date", "device", "command")


def recipe_from_dict(data: Any, where: str) -> Recipe:
    """Validate a recipe object; errors name `where` (the file) and the field."""
    check_format(data, where, FORMAT, FORMAT_VERSION, RecipeError)
    for name in ("delete", "flops_reduction_target", "visual_tokens"):
        if name not in data:
            raise RecipeError(f"{where}: missing field {name!r}")
    delete = data["delete"]
    if (not isinstance(delete, list) or not delete
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in delete)):
        raise RecipeError(f"{where}: field 'delete' must be a non-empty list of non-negative ints (one per decoder "
                          f"layer), got {delete!r}")
    target = data["flops_reduction_target"]
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 <= target < 1.0:
        raise RecipeError(f"{where}: field 'flops_reduction_target' must be a number in [0, 1), got {target!r}")
    tokens = data["visual_tokens"]
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise RecipeError(f"{where}: field 'visual_tokens' must be a positive int, got {tokens!r}")
    if sum(delete) > tokens:
        raise RecipeError(f"{where}: field 'delete' removes {sum(delete)} visual tokens, more than "
                          f"'visual_tokens' = {tokens}")
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise RecipeError(f"{where}: field 'model' must be an object, got {model!r}")
    if model.get("layers") is not None and model["layers"] != len(delete):
        raise RecipeError(f"{where}: field 'delete' has {len(delete)} entries but 'model.layers' is {model['layers']}")
    for name in ("calibration", "fitting", "source", "versions"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise RecipeError(f"{where}: field {name!r} must be an object or null, got {data[name]!r}")
    return Recipe(delete=list(delete), flops_reduction_target=float(target), visual_tokens=tokens,
                  **{name: data.get(name) for name in _OPTIONAL if name != "model"}, model=model, path=where)


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe file written by `llava-patch fitprune-recipe` (or by hand in the same format)."""
    return recipe_from_dict(read_fitted(path, RecipeError, "no such FitPrune recipe file"), str(path))


def published_recipes_data() -> dict[str, Any]:
    """The transcribed file of FitPrune's own LLaVA-1.5-7B schemes (see its 'source')."""
    data = resources.files("llava_patch.methods").joinpath("data", PUBLISHED_FILE).read_text()
    return json.loads(data)


def published_ratios() -> list[float]:
    return sorted(int(key) / 100 for key in published_recipes_data()["recipes"])


def published_recipe(reduction_ratio: float) -> Recipe:
    """FitPrune's own recipe for LLaVA-1.5-7B at a FLOPs reduction of `reduction_ratio` (a fraction:
    0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9), transcribed from the authors' code."""
    data = published_recipes_data()
    percent = reduction_ratio * 100
    key = str(round(percent))
    if isinstance(reduction_ratio, bool) or abs(percent - round(percent)) > 1e-6 or key not in data["recipes"]:
        available = ", ".join(f"{r:g}" for r in published_ratios())
        raise RecipeError(f"FitPrune publishes LLaVA-1.5-7B recipes for FLOPs reduction ratios {available} only; "
                          f"got {reduction_ratio!r} (fit one with `llava-patch fitprune-recipe`)")
    entry = data["recipes"][key]
    source = {**data["source"], "lines": entry["lines"], "reduction_ratio_argument": int(key)}
    recipe = Recipe(delete=list(entry["delete"]), flops_reduction_target=int(key) / 100,
                    visual_tokens=data["visual_tokens"], model=dict(data["model"]), source=source)
    recipe.path = f"{PUBLISHED_FILE} (reduction ratio {int(key)}%)"
    return recipe

