"""End to end on the transformers LLaVA-1.5 model: processor → forward / generate, unchanged usage."""

import pytest
import torch

import llava_patch
from llava_patch.models.tiny import NUM_PATCHES, prompt, random_image

QUESTIONS = ["what is in the image ?", "w1 w2 w3 w4 w5 describe the image", "colour ?"]
PRUNING_METHODS = [("fastervlm", {}), ("vtc_cls", {"layers": 3}), ("random", {"seed": 3}), ("grid", {})]


def _inputs(processor, seeds, questions=QUESTIONS):
    images = [random_image(seed, size=(48 + 9 * seed, 100 - 6 * seed)) for seed in seeds]
    texts = [prompt(questions[i % len(questions)]) for i in range(len(seeds))]
    return processor(images=images, text=texts, return_tensors="pt", padding=True)


def _generate(model, inputs, new_tokens=8):
    # The tiny vocabulary is small enough that greedy decoding can emit the image placeholder; a real
    # model practically never does, and the no-cache loop below could not re-feed it.
    return model.generate(
        **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
        suppress_tokens=[model.config.image_token_id],
    )


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("method, options", [*PRUNING_METHODS, ("none", {})])
def test_keeping_every_token_is_bit_identical_to_the_unpatched_model(tiny_llava, method, options):
    model, processor = tiny_llava
    inputs = _inputs(processor, [0, 1, 2])
    reference_logits, reference_tokens = _logits(model, inputs), _generate(model, inputs)
    budget = {} if method == "none" else {"keep": NUM_PATCHES}
    with llava_patch.apply(model, method, **budget, **options) as handle:
        assert torch.equal(_logits(model, inputs), reference_logits)
        assert torch.equal(_generate(model, inputs), reference_tokens)
        assert handle.last_visual_tokens == [NUM_PATCHES] * 3


def test_remove_restores_the_original_behaviour(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, [3, 4])
    reference = _logits(model, inputs)
    handle = llava_patch.apply(model, "fastervlm", reduction_ratio=0.75)
    pruned = _logits(model, inputs)
    assert pruned.shape[1] == reference.shape[1] - (NUM_PATCHES - 16)
    handle.remove()
    assert "forward" not in vars(model) and "generate" not in vars(model)
    assert torch.equal(_logits(model, inputs), reference)
    with llava_patch.apply(model, "vtc_cls", keep=5):
        assert _logits(model, inputs).shape[1] == reference.shape[1] - (NUM_PATCHES - 5)
    assert torch.equal(_logits(model, inputs), reference)


@pytest.mark.parametrize("method, options", PRUNING_METHODS)
@pytest.mark.parametrize("budget", [{"keep": 1}, {"keep": 13}, {"reduction_ratio": 0.95}])
def test_the_llm_receives_exactly_keep_visual_tokens_per_sample(tiny_llava, method, options, budget):
    model, processor = tiny_llava
    inputs = _inputs(processor, [5, 6, 7])
    text_tokens = inputs["attention_mask"].sum(dim=1) - NUM_PATCHES
    seen = []
    model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["attention_mask"].sum(dim=1)), with_kwargs=True
    )
    handle = llava_patch.apply(model, method, **budget, **options)
    keep = handle.keep
    _logits(model, inputs)
    _generate(model, inputs, new_tokens=2)
    forward_seen, prefill_seen = seen[0], seen[1]
    assert torch.equal(forward_seen - text_tokens, torch.full((3,), keep))
    assert torch.equal(prefill_seen - text_tokens, torch.full((3,), keep))
    assert handle.last_visual_tokens == [keep] * 3
    assert [s.numel() for s in handle.last_selection] == [keep] * 3
    assert keep == (3 if "reduction_ratio" in budget else budget["keep"])  # round(64 · 0.05) = 3


@pytest.mark.parametrize("method, options", PRUNING_METHODS)
def test_a_batch_generates_what_each_sample_generates_alone(tiny_llava, method, options):
    model, processor = tiny_llava
    seeds = [8, 9, 10]
    handle = llava_patch.apply(model, method, keep=11, **options)
    batch_inputs = _inputs(processor, seeds)
    batch = _generate(model, batch_inputs)
    batch_selection = handle.last_selection
    prompt_length = batch_inputs["input_ids"].shape[1]
    for row, seed in enumerate(seeds):
        alone_inputs = _inputs(processor, [seed], questions=[QUESTIONS[row]])
        alone = _generate(model, alone_inputs)
        assert torch.equal(batch[row, prompt_length:], alone[0, alone_inputs["input_ids"].shape[1]:])
        assert torch.equal(batch_selection[row], handle.last_selection[0])


def test_generate_returns_the_callers_prompt_in_front_of_the_answer(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, [1, 2])
    llava_patch.apply(model, "fastervlm", keep=4)
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False, return_dict_in_generate=True)
    assert torch.equal(output.sequences[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])
    assert output.sequences.shape[1] <= inputs["input_ids"].shape[1] + 5


@pytest.mark.parametrize("method, options", PRUNING_METHODS[:2])
def test_cached_generate_equals_a_no_cache_greedy_loop(tiny_llava, method, options):
    model, processor = tiny_llava
    inputs = _inputs(processor, [11, 12])
    llava_patch.apply(model, method, keep=6, **options)
    cached = _generate(model, inputs, new_tokens=6)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    for _ in range(6):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=inputs["pixel_values"], use_cache=False).logits
        logits[:, -1, model.config.image_token_id] = -float("inf")
        next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_token], dim=1)
        mask = torch.cat([mask, torch.ones_like(next_token)], dim=1)
    assert torch.equal(cached, ids)


def test_samples_with_different_image_counts_are_repadded_correctly(tiny_llava):
    """Two images in one prompt and one in another shrink by different amounts; rows are re-padded."""
    model, processor = tiny_llava
    texts = [f"USER : <image> <image> {QUESTIONS[0]} ASSISTANT :", prompt(QUESTIONS[2])]
    images = [random_image(13), random_image(14), random_image(15)]
    handle = llava_patch.apply(model, "fastervlm", keep=7)
    batch_inputs = processor(images=images, text=texts, return_tensors="pt", padding=True)
    batch = _generate(model, batch_inputs)
    assert handle.last_visual_tokens == [14, 7]
    assert len(handle.last_selection) == 3
    length = batch_inputs["input_ids"].shape[1]
    for row, (text, row_images) in enumerate([(texts[0], images[:2]), (texts[1], images[2:])]):
        alone_inputs = processor(images=row_images, text=[text], return_tensors="pt")
        alone = _generate(model, alone_inputs)
        assert torch.equal(batch[row, length:], alone[0, alone_inputs["input_ids"].shape[1]:])


def test_forward_shrinks_labels_with_the_prompt(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, [1, 2])
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == model.config.image_token_id, -100)
    labels = labels.masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        reference = model(**inputs, labels=labels).loss
        with llava_patch.apply(model, "fastervlm", keep=NUM_PATCHES):
            assert torch.equal(model(**inputs, labels=labels).loss, reference)
        with llava_patch.apply(model, "fastervlm", keep=10):
            pruned = model(**inputs, labels=labels)
    assert pruned.logits.shape[1] == inputs["input_ids"].shape[1] - (NUM_PATCHES - 10)
    assert torch.isfinite(pruned.loss) and not torch.equal(pruned.loss, reference)


def test_prompts_without_full_placeholders_are_refused(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, [1])
    llava_patch.apply(model, "fastervlm", keep=10)
    ids = inputs["input_ids"][0]
    first_placeholder = int((ids == model.config.image_token_id).nonzero()[0])
    short = torch.cat([ids[:first_placeholder], ids[first_placeholder + 1 :]])[None]  # one placeholder missing
    with pytest.raises(ValueError, match="hold 63 placeholder tokens .* 1 item\\(s\\) passed need 64"):
        model(input_ids=short, pixel_values=inputs["pixel_values"])
    with pytest.raises(ValueError, match="inputs_embeds cannot be combined with pixel inputs"):
        model(inputs_embeds=torch.zeros(1, 3, 32), pixel_values=inputs["pixel_values"])


def test_text_only_calls_pass_through(tiny_llava):
    model, processor = tiny_llava
    ids = processor.tokenizer(["USER : colour ? ASSISTANT :"], return_tensors="pt")
    reference = _generate(model, ids)
    with llava_patch.apply(model, "fastervlm", keep=3) as handle:
        assert torch.equal(_generate(model, ids), reference)
        assert handle.last_selection == []


def test_the_projector_runs_on_the_kept_tokens_only(tiny_llava):
    model, processor = tiny_llava
    shapes = []
    model.model.multi_modal_projector.register_forward_hook(lambda module, args, output: shapes.append(args[0].shape))
    llava_patch.apply(model, "vtc_cls", keep=9)
    _logits(model, _inputs(processor, [1, 2, 3]))
    assert shapes == [torch.Size([3, 9, 32])]
