"""The original LLaVA codebase backend, cross-checked against the transformers backend.

The tiny checkpoint is written in the original layout (config with `mm_vision_tower` naming a local
CLIP directory, `model.mm_projector` weights, a sentencepiece tokenizer.model) and loaded through
`llava.model.builder.load_pretrained_model`; the transformers side loads its `llava-patch convert`ed copy.
"""

import pytest
import torch
from llava.constants import IMAGE_TOKEN_INDEX
from llava.conversation import conv_templates
from llava.mm_utils import process_images, tokenizer_image_token

import llava_patch
from llava_patch.models.loading import load_model
from llava_patch.models.prompting import preprocess_images
from llava_patch.models.tiny import NUM_PATCHES, random_image

QUESTIONS = [
    "What is shown in the image?",
    "Is there a dog in the image?\nAnswer the question using a single word or phrase.",
    "How many people are there? Describe the colour.",
]
PRUNING_METHODS = [("fastervlm", {}), ("vtc_cls", {"layers": 3}), ("random", {"seed": 1}), ("grid", {})]


def _images(seeds):
    return [random_image(seed, size=(40 + 11 * seed, 90 - 7 * seed)) for seed in seeds]


@pytest.fixture
def llava_vlm(tiny_original):
    return load_model(tiny_original[0], backend="llava", device="cpu")


@pytest.fixture
def hf_vlm(tiny_original):
    return load_model(tiny_original[1], backend="hf", device="cpu")


def _logits(vlm, inputs):
    with torch.no_grad():
        return vlm.forward(inputs).logits


def test_prompts_and_token_ids_equal_llavas_own(llava_vlm, hf_vlm):
    for question in QUESTIONS:
        conversation = conv_templates["vicuna_v1"].copy()
        conversation.append_message(conversation.roles[0], "<image>\n" + question)
        conversation.append_message(conversation.roles[1], None)
        expected_prompt = conversation.get_prompt()
        assert llava_vlm.prompt(question) == hf_vlm.prompt(question) == expected_prompt
        expected_ids = tokenizer_image_token(expected_prompt, llava_vlm.tokenizer, IMAGE_TOKEN_INDEX)
        assert llava_vlm.prompt_ids(question) == expected_ids
        image_token = hf_vlm.image_token_id
        hf_ids = [i for token in expected_ids for i in ([image_token] * NUM_PATCHES if token == IMAGE_TOKEN_INDEX else [token])]
        assert hf_vlm.prompt_ids(question) == hf_ids


def test_pad_preprocessing_equals_llavas_process_images(llava_vlm):
    images = _images([0, 1, 2])
    expected = process_images(images, llava_vlm.image_processor, llava_vlm.model.config)
    assert torch.equal(preprocess_images(images, llava_vlm.image_processor), expected)


def test_keeping_every_token_is_identical_to_the_unpatched_original(llava_vlm):
    inputs = llava_vlm.prepare(_images([0, 1]), QUESTIONS[:2])
    reference = _logits(llava_vlm, inputs)
    reference_answers = llava_vlm.generate(_images([0, 1]), QUESTIONS[:2], max_new_tokens=6)
    handle = llava_patch.apply(llava_vlm.model, "fastervlm", keep=NUM_PATCHES)
    assert torch.equal(_logits(llava_vlm, inputs), reference)
    assert llava_vlm.generate(_images([0, 1]), QUESTIONS[:2], max_new_tokens=6) == reference_answers
    assert llava_vlm.model.get_vision_tower().vision_tower.config._attn_implementation == "sdpa"
    handle.remove()
    assert "encode_images" not in vars(llava_vlm.model)
    with llava_patch.apply(llava_vlm.model, "vtc_cls", keep=5):
        assert _logits(llava_vlm, inputs).shape[1] == reference.shape[1] - (NUM_PATCHES - 5)
    assert torch.equal(_logits(llava_vlm, inputs), reference)


@pytest.mark.parametrize("method, options", PRUNING_METHODS)
def test_both_backends_keep_the_same_tokens_and_agree(llava_vlm, hf_vlm, method, options):
    images, questions = _images([3, 4, 5]), QUESTIONS
    original = llava_patch.apply(llava_vlm.model, method, keep=13, **options)
    converted = llava_patch.apply(hf_vlm.model, method, keep=13, **options)
    llava_inputs, hf_inputs = llava_vlm.prepare(images, questions), hf_vlm.prepare(images, questions)
    assert torch.equal(llava_inputs["images"], hf_inputs["pixel_values"])
    llava_logits, hf_logits = _logits(llava_vlm, llava_inputs), _logits(hf_vlm, hf_inputs)
    for a, b in zip(original.last_selection, converted.last_selection):
        assert torch.equal(a, b)
    assert original.last_visual_tokens == converted.last_visual_tokens == [13, 13, 13]
    assert llava_logits.shape[:2] == hf_logits.shape[:2]
    vocabulary = llava_logits.shape[-1]
    # Both sides are left padded to the same length: compare the span every row attends to.
    span = 13 + min(len(llava_vlm.prompt_ids(q)) - 1 for q in questions)
    torch.testing.assert_close(llava_logits[:, -span:], hf_logits[:, -span:, :vocabulary], rtol=0, atol=1e-5)
    for seeds in ([6, 7], [8]):
        answers = [vlm.generate(_images(seeds), questions[: len(seeds)], max_new_tokens=8) for vlm in (llava_vlm, hf_vlm)]
        assert answers[0] == answers[1]


def test_the_original_llm_receives_exactly_keep_visual_tokens_per_sample(llava_vlm):
    model = llava_vlm.model
    seen = []
    model.get_model().register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["attention_mask"].sum(dim=1)), with_kwargs=True)
    handle = llava_patch.apply(model, "fastervlm", reduction_ratio=0.75)
    inputs = llava_vlm.prepare(_images([1, 2, 3]), QUESTIONS)
    text_tokens = inputs["attention_mask"].sum(dim=1) - 1  # one −200 per image
    _logits(llava_vlm, inputs)
    assert torch.equal(seen[0] - text_tokens, torch.full((3,), 16))
    assert handle.last_visual_tokens == [16, 16, 16]
    assert [s.numel() for s in handle.last_selection] == [16, 16, 16]


@pytest.mark.parametrize("method", ["none", "fastervlm"])
def test_a_batch_generates_what_each_sample_generates_alone(llava_vlm, method):
    budget = {} if method == "none" else {"keep": 9}
    llava_patch.apply(llava_vlm.model, method, **budget)
    images = _images([4, 5, 6])
    batch = llava_vlm.generate(images, QUESTIONS, max_new_tokens=8)
    alone = [llava_vlm.generate([image], [question], max_new_tokens=8)[0] for image, question in zip(images, QUESTIONS)]
    assert batch == alone


def test_v16_style_checkpoints_are_refused_clearly(llava_vlm):
    llava_vlm.model.config.mm_patch_merge_type = "spatial_unpad"
    with pytest.raises(ValueError, match="mm_patch_merge_type='spatial_unpad'.*LLaVA-1.5"):
        llava_patch.apply(llava_vlm.model, "fastervlm", keep=8)
    assert "encode_images" not in vars(llava_vlm.model)
