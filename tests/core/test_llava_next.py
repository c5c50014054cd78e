"""LLaVA-NeXT: per-crop selection, the "native" and "paper" layouts, on transformers and on the
original LLaVA v1.6 code. Tiny crops are 56 px = 8×8 patches; the paper grid is 112×112 (2×2 crops)."""

import pytest
import torch
from transformers import AutoProcessor, LlavaNextForConditionalGeneration

import llava_patch
from llava_patch.anyres import paper_grid_pinpoints
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import NUM_PATCHES, SELECT_LAYER, random_image

SIZES = [(60, 120), (100, 50), (56, 56), (50, 160)]  # (height, width): wide, tall, square, very wide
TEXTS = ["USER : <image> what is in the image ? ASSISTANT :", "USER : <image> w1 w2 w3 ASSISTANT :",
         "USER : <image> colour ? ASSISTANT :", "USER : <image> describe ASSISTANT :"]
SIDE = 8


def _load(directory, attn="sdpa"):
    model = LlavaNextForConditionalGeneration.from_pretrained(directory, attn_implementation=attn).eval()
    return model, AutoProcessor.from_pretrained(directory)


def _inputs(processor, indices, paper=False):
    if paper:
        processor.image_processor.image_grid_pinpoints = paper_grid_pinpoints(56)
    images = [random_image(20 + i, SIZES[i]) for i in indices]
    return processor(images=images, text=[TEXTS[i] for i in indices], return_tensors="pt", padding=True)


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def _generate(model, inputs):
    return model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                          suppress_tokens=[model.config.image_token_id])


def _eager_reference(directory, crops, keep):
    tower = _load(directory, attn="eager")[0].model.vision_tower
    with torch.no_grad():
        scores = tower(crops, output_attentions=True).attentions[SELECT_LAYER][:, :, 0, 1:].mean(dim=1)
    return scores.topk(keep, dim=-1).indices.sort(dim=-1).values


def _region(size, grid):
    """Independent unpad arithmetic: the rows/cols of the stitched grid the image covers."""
    (height, width), (rows, cols) = size, grid
    grid_h, grid_w = rows * SIDE, cols * SIDE
    if width / height > grid_w / grid_h:
        new = int(round(height * grid_w / width, 7))
        pad = (grid_h - new) // 2
        return (pad, grid_h - pad), (0, grid_w)
    new = int(round(width * grid_h / height, 7))
    pad = (grid_w - new) // 2
    return (0, grid_h), (pad, grid_w - pad)


def _grid(size):
    from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape
    from llava_patch.models.tiny import TINY_GRID_PINPOINTS

    return get_anyres_image_grid_shape(list(size), TINY_GRID_PINPOINTS, 56)


def test_native_mode_keeping_everything_is_bit_identical(tiny_next_dir):
    model, processor = _load(tiny_next_dir)
    inputs = _inputs(processor, [0, 1, 2])
    reference, tokens = _logits(model, inputs), _generate(model, inputs)
    with llava_patch.apply(model, "fastervlm", keep=NUM_PATCHES) as handle:
        assert torch.equal(_logits(model, inputs), reference)
        assert torch.equal(_generate(model, inputs), tokens)
    assert [len(crops) for crops in handle.last_selection] == [3, 3, 3]  # base + 2 grid crops each


def test_paper_mode_keeping_everything_equals_the_spatial_layout_reference(tiny_next_dir):
    model, processor = _load(tiny_next_dir)
    inputs = _inputs(processor, [1], paper=True)
    image_token = model.config.image_token_id
    with torch.no_grad():  # reference: full crops, base then the 16×16 stitched grid row by row, no newlines
        hidden = model.model.vision_tower(inputs["pixel_values"][0], output_hidden_states=True).hidden_states[-2][:, 1:]
        crops = model.model.multi_modal_projector(hidden)
        grid = crops[1:].view(2, 2, SIDE, SIDE, -1).permute(0, 2, 1, 3, 4).reshape(-1, crops.shape[-1])
        features = torch.cat([crops[0], grid])
        ids = inputs["input_ids"][0]
        first = int((ids == image_token).nonzero()[0])
        last = int((ids == image_token).nonzero()[-1])
        sequence = torch.cat([ids[:first], torch.full((5 * NUM_PATCHES,), image_token), ids[last + 1 :]])[None]
        embeds = model.get_input_embeddings()(sequence)
        embeds[sequence == image_token] = features
        reference = model(inputs_embeds=embeds).logits
    with llava_patch.apply(model, "fastervlm", keep=NUM_PATCHES, mode="paper"):
        torch.testing.assert_close(_logits(model, inputs), reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["native", "paper"])
def test_each_crop_keeps_its_own_top_k_like_an_eager_reference(tiny_next_dir, mode):
    model, processor = _load(tiny_next_dir)
    inputs = _inputs(processor, [0, 1, 3], paper=mode == "paper")
    handle = llava_patch.apply(model, "fastervlm", keep=11, mode=mode)
    _logits(model, inputs)
    for index, crops in enumerate(handle.last_selection):
        reference = _eager_reference(tiny_next_dir, inputs["pixel_values"][index, : len(crops)], 11)
        assert torch.equal(torch.stack(crops), reference)


@pytest.mark.parametrize("ratio, keep", [(0.25, 48), (0.5, 32), (0.75, 16), (0.9, 6), (0.95, 3)])
def test_paper_mode_gives_exactly_one_plus_crops_times_keep(tiny_next_dir, ratio, keep):
    model, processor = _load(tiny_next_dir)
    inputs = _inputs(processor, [0, 1, 2, 3], paper=True)
    handle = llava_patch.apply(model, "vtc_cls", reduction_ratio=ratio, mode="paper")
    _logits(model, inputs)
    assert handle.last_visual_tokens == [5 * keep] * 4  # 2880 → 2160/1440/720/290/145 at 576 patches per crop


@pytest.mark.parametrize("keep", [5, 20, NUM_PATCHES])
def test_native_mode_counts_kept_tokens_inside_the_image_plus_one_newline_per_row(tiny_next_dir, keep):
    model, processor = _load(tiny_next_dir)
    inputs = _inputs(processor, [0, 1, 2, 3])
    handle = llava_patch.apply(model, "fastervlm", keep=keep)
    _logits(model, inputs)
    assert handle.last_visual_tokens == _native_counts(SIZES, handle.last_selection, keep)


def _native_counts(sizes, selection, keep, grid=_grid):
    """keep (base) + kept grid tokens inside the unpadded region + one newline per region row."""
    counts = []
    for size, crops in zip(sizes, selection):
        rows, cols = grid(size)
        (top, bottom), (left, right) = _region(size, (rows, cols))
        inside = 0
        for crop, kept in enumerate(crops[1:]):
            y = (crop // cols) * SIDE + kept // SIDE
            x = (crop % cols) * SIDE + kept % SIDE
            inside += int(((y >= top) & (y < bottom) & (x >= left) & (x < right)).sum())
        counts.append(keep + inside + (bottom - top))
    return counts


@pytest.mark.parametrize("mode", ["native", "paper"])
def test_a_batch_of_two_image_sizes_generates_what_each_does_alone(tiny_next_dir, mode):
    model, processor = _load(tiny_next_dir)
    llava_patch.apply(model, "fastervlm", keep=9, mode=mode)
    batch_inputs = _inputs(processor, [0, 1], paper=mode == "paper")
    batch = _generate(model, batch_inputs)
    for row, index in enumerate([0, 1]):
        alone_inputs = _inputs(processor, [index], paper=mode == "paper")
        alone = _generate(model, alone_inputs)
        assert torch.equal(batch[row, batch_inputs["input_ids"].shape[1]:], alone[0, alone_inputs["input_ids"].shape[1]:])


def test_bad_next_options_are_refused(tiny_next_dir):
    model, processor = _load(tiny_next_dir)
    with pytest.raises(ValueError, match=r"keep=65 is outside \[1, 64\]"):
        llava_patch.apply(model, "fastervlm", keep=65)
    with pytest.raises(ValueError, match="mode='unpadded'; LLaVA-NeXT modes are paper, native"):
        llava_patch.apply(model, "fastervlm", keep=8, mode="unpadded")
    with pytest.raises(ValueError, match="unknown option.*'grid' for method 'fastervlm'.*this model's options: mode"):
        llava_patch.apply(model, "fastervlm", keep=8, grid="2x2")
    inputs = _inputs(processor, [2])  # the checkpoint's grid gives this square image 2 grid crops, not 4
    with llava_patch.apply(model, "fastervlm", keep=8, mode="paper"):
        with pytest.raises(ValueError, match="need 5.*processor needs the same fixed grid"):
            _logits(model, inputs)
    assert model.config.image_grid_pinpoints[0] == [56, 112]  # restored


# The original LLaVA v1.6 code: its own `spatial_unpad` and `spatial` merges are the references.

IMAGES = [random_image(30, (60, 120)), random_image(31, (100, 50)), random_image(32, (56, 56))]
QUESTIONS = ["What is shown?", "Is there a dog?", "Describe the colour."]


def _original_logits(vlm):
    with torch.no_grad():
        return vlm.forward(vlm.prepare(IMAGES, QUESTIONS)).logits


def test_original_v16_keeping_everything_matches_its_own_merges(tiny_original_next):
    vlm = load_model(tiny_original_next, backend="llava", device="cpu")
    native = _original_logits(vlm)
    with llava_patch.apply(vlm.model, "fastervlm", keep=NUM_PATCHES):
        assert torch.equal(_original_logits(vlm), native)
    with llava_patch.apply(vlm.model, "fastervlm", keep=NUM_PATCHES, mode="paper") as handle:
        paper = _original_logits(vlm)
        assert handle.last_visual_tokens == [5 * NUM_PATCHES] * 3
    vlm.model.config.mm_patch_merge_type, vlm.model.config.image_grid_pinpoints = "spatial", paper_grid_pinpoints(56)
    assert torch.equal(_original_logits(vlm), paper)  # the original's own unpruned `spatial` merge, 672-style grid


def test_original_v16_and_transformers_next_keep_the_same_crop_tokens(tiny_original_next):
    vlm = load_model(tiny_original_next, backend="llava", device="cpu")
    with llava_patch.apply(vlm.model, "vtc_cls", keep=7, mode="paper") as handle:
        vlm.generate(IMAGES, QUESTIONS, max_new_tokens=3)
        assert handle.last_visual_tokens == [35, 35, 35]
        crops = vlm.prepare(IMAGES, QUESTIONS)["images"]
        assert all(len(image) == 5 for image in handle.last_selection)
    tower_dir = tiny_original_next.parent / "clip-vit-tiny"
    from transformers import CLIPVisionModel

    tower = CLIPVisionModel.from_pretrained(tower_dir, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        attentions = tower(crops.flatten(0, 1).float(), output_attentions=True).attentions
    scores = sum(attentions[layer][:, :, 0, 1:].mean(dim=1) for layer in range(SELECT_LAYER - 2, SELECT_LAYER + 1))
    reference = scores.topk(7, dim=-1).indices.sort(dim=-1).values.view(3, 5, 7)
    assert torch.equal(torch.stack([torch.stack(image) for image in handle.last_selection]), reference)
    with llava_patch.apply(vlm.model, "fastervlm", keep=10) as handle:
        _original_logits(vlm)
        sizes = [(image.height, image.width) for image in IMAGES]
        assert handle.last_visual_tokens == _native_counts(sizes, handle.last_selection, 10, grid=_original_grid)


def _original_grid(size):
    """(rows, cols) as the original code lays crops out: its pinpoints are (width, height) pairs."""
    from llava.mm_utils import get_anyres_image_grid_shape
    from llava_patch.models.tiny import TINY_GRID_PINPOINTS

    cols, rows = get_anyres_image_grid_shape((size[1], size[0]), TINY_GRID_PINPOINTS, 56)
    return rows, cols
