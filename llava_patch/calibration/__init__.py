"""Calibration: recipes fitted on calibration data before pruning. FitPrune's per-layer deletion
recipes: the file format and loader (`recipe`, no other package imports), the authors' published
LLaVA-1.5-7B recipes, and the recipe generation (`fitprune`, imported on demand: it loads torch models)."""

from ..fitprune_recipe import Recipe, RecipeError, load_recipe, published_ratios, published_recipe

__all__ = ["Recipe", "RecipeError", "load_recipe", "published_ratios", "published_recipe"]
