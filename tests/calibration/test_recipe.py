"""The FitPrune recipe format, its loader's errors, and the authors' published LLaVA-1.5-7B schemes."""

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from llava_patch.calibration import Recipe, RecipeError, load_recipe, published_ratios, published_recipe
from llava_patch.fitprune_recipe import recipe_from_dict

# a git copy of ywh187/FitPrune (a clone, or a bare mirror), where the tester has one
MIRROR = Path(os.environ.get("FITPRUNE_REPO", "no-fitprune-repo"))
AUTHORS_FILE = "LLaVA_1.5/llava/model/language_model/modeling_llama.py"


def _recipe(**changes):
    data = Recipe(delete=[3, 2, 0, 1], flops_reduction_target=0.5, visual_tokens=10,
                  model={"layers": 4, "hidden_size": 8, "intermediate_size": 16}).to_dict()
    data.update(changes)
    return data


def test_schedule_and_layer_mean():
    recipe = recipe_from_dict(_recipe(), "r.json")
    assert recipe.schedule() == [10, 7, 5, 5] and recipe.schedule(12) == [12, 9, 7, 7]
    assert recipe.schedule_after_deletion() == [7, 5, 5, 4]
    assert recipe.layer_mean_visual_tokens() == 27 / 4
    recipe.check_layers(4)
    with pytest.raises(RecipeError, match=r"r\.json: field 'delete' has 4 entries \(layers\) but the language model has 32"):
        recipe.check_layers(32)
    with pytest.raises(RecipeError, match="removes 6 visual tokens but the image has only 5"):
        recipe.schedule(5)


def test_save_and_load_round_trip_and_no_overwrite(tmp_path):
    recipe = recipe_from_dict(_recipe(calibration={"file": "q.jsonl", "sha256": "0" * 64, "samples": 2,
                                                   "question_ids": [1, 2]}), "memory")
    path = recipe.save(tmp_path / "sub" / "r.json")
    loaded = load_recipe(path)
    assert loaded.delete == [3, 2, 0, 1] and loaded.calibration["question_ids"] == [1, 2] and loaded.path == str(path)
    assert json.loads(path.read_text())["layer_mean_visual_tokens"] == 6.75
    with pytest.raises(FileExistsError, match=r"r\.json: already exists"):
        recipe.save(path)


@pytest.mark.parametrize("changes, message", [
    ({"format": "other"}, r"field 'format' is 'other'"),
    ({"format_version": 2}, r"field 'format_version' is 2"),
    ({"delete": [1, -1, 0, 0]}, r"field 'delete' must be a non-empty list of non-negative ints"),
    ({"delete": [1, 2.0, 0, 0]}, r"field 'delete' must be"),
    ({"delete": []}, r"field 'delete' must be"),
    ({"delete": [5, 6, 0, 0]}, r"field 'delete' removes 11 visual tokens, more than 'visual_tokens' = 10"),
    ({"flops_reduction_target": 1.0}, r"field 'flops_reduction_target' must be a number in \[0, 1\)"),
    ({"flops_reduction_target": "0.5"}, r"field 'flops_reduction_target'"),
    ({"visual_tokens": 0}, r"field 'visual_tokens' must be a positive int"),
    ({"model": {"layers": 3}}, r"field 'delete' has 4 entries but 'model.layers' is 3"),
    ({"calibration": [1]}, r"field 'calibration' must be an object or null"),
])
def test_loader_errors_name_the_file_and_the_field(tmp_path, changes, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_recipe(**changes)))
    with pytest.raises(RecipeError, match=rf"{re.escape(str(path))}: .*{message}"):
        load_recipe(path)


def test_loader_errors_for_missing_fields_bad_json_and_missing_files(tmp_path):
    path = tmp_path / "bad.json"
    data = _recipe()
    del data["visual_tokens"]
    path.write_text(json.dumps(data))
    with pytest.raises(RecipeError, match=r"bad\.json: missing field 'visual_tokens'"):
        load_recipe(path)
    path.write_text("{\n  \"delete\": [1,\n")
    with pytest.raises(RecipeError, match=r"bad\.json: not valid JSON \(line 3"):
        load_recipe(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.json: no such FitPrune recipe file"):
        load_recipe(tmp_path / "nope.json")


# --- the published schemes ---------------------------------------------------------------------------
def test_published_recipes_hard_coded_values():
    """Spot values and sums of the authors' delete_scheme dicts (modeling_llama.py:360-390, d28e418)."""
    assert published_ratios() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9]
    sums = {0.0: 0, 0.1: 66, 0.2: 149, 0.3: 264, 0.4: 336, 0.5: 403, 0.55: 424, 0.6: 449, 0.7: 488, 0.8: 514, 0.9: 539}
    for ratio, total in sums.items():
        recipe = published_recipe(ratio)
        assert sum(recipe.delete) == total and recipe.layers == 32 and recipe.visual_tokens == 576
        assert recipe.flops_reduction_target == ratio
    ninety = published_recipe(0.9)
    assert ninety.delete[:8] == [262, 153, 80, 19, 13, 1, 2, 0] and ninety.delete[27] == 1
    assert ninety.schedule()[:5] == [576, 314, 161, 81, 62] and ninety.layer_mean_visual_tokens() == 72.84375
    assert published_recipe(0.6).delete[2] == 89 and published_recipe(0.1).delete[10] == 11
    assert published_recipe(0.8).delete[:3] == [128, 127, 118]
    assert round(ninety.flops_reduction(), 4) == 0.8968  # FitPrune's own FLOPs count: just short of 90%
    source = ninety.source
    assert source["commit"] == "d28e418c920912b20dc888325651ecc6e214e6a1" and source["file"] == AUTHORS_FILE
    assert source["lines"] == [388, 390] and source["reduction_ratio_argument"] == 90
    assert ninety.model["name"] == "llava-1.5-7b" and ninety.calibration is None


def test_published_recipe_refuses_other_ratios():
    for ratio in (0.75, 0.95, 0.25, 90, 0.901):
        with pytest.raises(RecipeError, match=r"ratios 0, 0\.1, .* 0\.9 only; got"):
            published_recipe(ratio)


def _authors_schemes(source: str) -> dict[int, tuple[int, list[int]]]:
    """{reduction_ratio: (line of the dict, delete list)} read from the authors' modeling_llama.py."""
    schemes, ratio = {}, None
    for number, line in enumerate(source.splitlines(), 1):
        match = re.search(r"reduction_ratio == (\d+)", line)
        if match:
            ratio = int(match.group(1))
        if "delete_scheme = {" in line:
            scheme = ast.literal_eval(line.split("=", 1)[1].strip())
            schemes[ratio] = (number, [scheme[layer] for layer in range(len(scheme))])
    return schemes


def test_transcription_matches_the_authors_file():
    if not MIRROR.exists():
        pytest.skip("no copy of ywh187/FitPrune: set FITPRUNE_REPO to one to compare with the authors' file")
    source = subprocess.run(["git", "-C", str(MIRROR), "show", f"d28e418c920912b20dc888325651ecc6e214e6a1:{AUTHORS_FILE}"],
                            capture_output=True, text=True)
    if source.returncode:
        pytest.skip(f"commit d28e418 not in {MIRROR}")
    schemes = _authors_schemes(source.stdout)
    assert sorted(schemes) == [round(r * 100) for r in published_ratios()]
    for percent, (line, delete) in schemes.items():
        recipe = published_recipe(percent / 100)
        assert recipe.delete == delete and recipe.source["lines"][1] == line
