"""The attention figures by default: the toy LLaVA on the real photos, each figure naming its model (caption and
JSON sidecar), ChatML prompts from the toy's config, and the [CLS] map drawn being the tower's own attention."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from llava_patch.models import toy
from llava_patch.models.prompting import chatml_prompt, preprocess_images, tokenize_with_images
from llava_patch.paper import analysis
from llava_patch.paper.figures import (PHOTOS_SOURCE, attention_map_figures, load_attention_study,
                                       write_attention_figures)


@pytest.fixture(scope="module")
def study(toy_dir):
    return load_attention_study()


def test_the_default_study_is_the_toy_on_the_four_photos(study, toy_dir):
    assert study.checkpoint == toy_dir
    assert [sample["id"] for sample in study.samples] == ["astronaut", "chelsea", "coffee", "rocket"]
    assert all(sample["credit"] and (study.image_root / sample["image"]).is_file() for sample in study.samples)
    assert study.caption == f"{toy_dir.name} (projector trained on easy-VQA) — {PHOTOS_SOURCE}"


def test_prepare_builds_chatml_prompt_ids_from_the_toys_config(study):
    model, processor = study.model, study.processor
    question = analysis.first_question(study.samples[0])
    inputs, visual = analysis._prepare(model, processor.tokenizer, processor.image_processor,
                                       analysis.sample_image(study.samples[0], study.image_root), question)
    ids = inputs["input_ids"][0].tolist()
    assert ids == tokenize_with_images(chatml_prompt(question), processor.tokenizer, model.config.image_token_id, 256)
    text = processor.tokenizer.decode([i for i in ids if i != model.config.image_token_id])
    assert text == f"<|im_start|>user\n\n{question}<|im_end|>\n<|im_start|>assistant\n"
    assert visual.numel() == 256 and int(visual[0]) == len(processor.tokenizer("<|im_start|>user\n").input_ids)


def test_the_cls_map_drawn_for_a_photo_is_the_towers_eager_attention_row(study, toy_dir):
    (name, figure), = attention_map_figures(study, count=1).items()
    assert name == "attention_maps_astronaut"
    assert figure.get_suptitle().startswith(study.caption)
    drawn = figure.axes[1].images[1].get_array()  # panel 2: the photo, then the [CLS] heat map over it
    eager = LlavaForConditionalGeneration.from_pretrained(toy_dir, attn_implementation="eager").eval()
    config = eager.config
    select = config.vision_config.num_hidden_layers + config.vision_feature_layer  # hidden_states[-2]: layer 10's output
    pixel_values = preprocess_images([analysis.sample_image(study.samples[0], study.image_root)], study.processor.image_processor)
    with torch.no_grad():
        attentions = eager.model.vision_tower(pixel_values, output_attentions=True).attentions
    expected = attentions[select][0, :, 0, 1:].mean(dim=0).reshape(16, 16)  # heads averaged, [CLS] row, [CLS] key dropped
    torch.testing.assert_close(torch.from_numpy(drawn.data), expected.double(), rtol=1e-4, atol=1e-6)
    other_layer = attentions[select + 1][0, :, 0, 1:].mean(dim=0).reshape(16, 16).double()
    assert not torch.allclose(torch.from_numpy(drawn.data), other_layer, rtol=1e-2, atol=1e-4)


def test_the_attention_figures_are_written_with_sidecars_naming_the_model(study, toy_dir, tmp_path):
    two = dataclasses.replace(study, samples=study.samples[:2])
    paths = write_attention_figures(two, tmp_path, made_by="a test")
    stems = ["attention_maps_astronaut", "attention_maps_chelsea", "attention_shift_bars", "attention_shift_heatmaps",
             "attention_dispersion"]
    assert [path.name for path in paths] == [f"{stem}.{suffix}" for stem in stems for suffix in ("png", "pdf", "json")]
    for stem in stems:
        sidecar = json.loads((tmp_path / f"{stem}.json").read_text())
        assert sidecar["figure"] == stem and sidecar["caption"] == study.caption
        assert sidecar["model"].startswith(toy.TOY_NAME) and "easy-VQA" in sidecar["model"]
        assert Path(sidecar["checkpoint"]).expanduser() == toy_dir
        assert sidecar["projector_sha256"][:12] == toy_dir.name.rsplit("-", 1)[1]
        assert sidecar["prompt_format"] == "chatml" and sidecar["select_layer"] == 10 and sidecar["made_by"] == "a test"
        assert sidecar["samples_source"] == PHOTOS_SOURCE
        expected = ["astronaut"] if stem.endswith("astronaut") else ["chelsea"] if stem.endswith("chelsea") else ["astronaut", "chelsea"]
        assert [sample["id"] for sample in sidecar["samples"]] == expected
        assert all("via scikit-image" in sample["credit"] for sample in sidecar["samples"])
        assert (tmp_path / f"{stem}.png").stat().st_size > 10_000
