"""Calibration: what is fitted on calibration data before pruning.

- FitPrune's per-layer deletion recipes: the file format and loader (`llava_patch.fitprune_recipe`,
  in the core so the method can read it), the authors' published LLaVA-1.5-7B recipes, and the recipe generation (`fitprune`,
  imported on demand: it loads torch models).
- SparseVLM's settings (`sparsevlm`): the scale, bias fixed, at which its mean layer-averaged
  visual-token count over calibration questions meets a target (`llava-patch sparsevlm-calibrate`),
  and the file format and loader the method's `settings` option uses (`llava_patch.sparsevlm_settings`,
  in the core too).
"""

from ..fitprune_recipe import Recipe, RecipeError, load_recipe, published_ratios, published_recipe
from ..sparsevlm_settings import SettingsError, SparseVLMSettings, load_sparsevlm_settings

__all__ = ["Recipe", "RecipeError", "load_recipe", "published_ratios", "published_recipe",
           "SettingsError", "SparseVLMSettings", "load_sparsevlm_settings"]
