"""FastV inside the language model: exact semantics, KV cache layout, batching, both backends."""

import pytest
import torch

import llava_patch
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import load, prompt, random_image

QUESTIONS = ["what is in the image ?", "w1 w2 w3 w4 w5 describe the image", "colour ?"]
K = 2


def _inputs(processor, seeds, questions=QUESTIONS):
    images = [random_image(seed, size=(48 + 9 * seed, 100 - 6 * seed)) for seed in seeds]
    return processor(images=images, text=[prompt(questions[i % 3]) for i in range(len(seeds))],
                     return_tensors="pt", padding=True)


def _generate(model, inputs, new_tokens=6):
    return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          suppress_tokens=[model.config.image_token_id])


def _image_positions(model, inputs, row):
    return (inputs["input_ids"][row] == model.config.image_token_id).nonzero().squeeze(-1)


def test_pruning_nothing_is_bit_identical(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, [0, 1, 2])
    with torch.no_grad():
        reference = model(**inputs).logits
    tokens = _generate(model, inputs)
    with llava_patch.apply(model, "fastv", reduction_ratio=0.0) as handle:
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, reference)
        assert torch.equal(_generate(model, inputs), tokens)
        assert handle.last_visual_tokens == [64] * 3
    assert "forward" not in vars(model.model.language_model)


def test_the_last_token_scores_equal_eager_attention_of_layer_k_minus_1(tiny_llava, tiny_llava_dir):
    model, processor = tiny_llava
    inputs = _inputs(processor, [3, 4, 5])
    handle = llava_patch.apply(model, "fastv", keep=10, layer=K)
    with torch.no_grad():
        model(**inputs)
    eager, _ = load(tiny_llava_dir, attn_implementation="eager")
    with torch.no_grad():
        attentions = eager(**inputs, output_attentions=True).attentions
    last_row = attentions[K - 1][:, :, -1, :].mean(dim=1)  # left padded: the last position is each row's last token
    for row in range(3):
        expected = last_row[row, _image_positions(model, inputs, row)]
        torch.testing.assert_close(handle.last_scores[row], expected, rtol=1e-5, atol=1e-7)
        assert torch.equal(handle.last_selection[row], expected.topk(10).indices.sort().values)


def test_the_kv_cache_is_full_below_layer_k_and_pruned_from_it(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, [6])
    length = inputs["input_ids"].shape[1]
    handle = llava_patch.apply(model, "fastv", reduction_ratio=0.75, layer=K)
    with torch.no_grad():
        output = model(**inputs, use_cache=True)
    assert [layer.keys.shape[-2] for layer in output.past_key_values.layers] == [length, length, length - 48, length - 48]
    assert handle.last_visual_tokens == [16]
    assert handle.last_layer_visual_tokens == [[64, 64, 16, 16]] == [handle.method_object.layer_schedule(64, 4)]
    assert handle.last_equivalent_visual_tokens == [(2 * 64 + 2 * 16) / 4]


def _reference_generate(model, inputs, kept_images, new_tokens):
    """Greedy decoding that recomputes everything each step without a cache: layers < K on the whole
    sequence, then the prefill's kept image tokens, all text and every generated token, at their
    original positions, through layers ≥ K (batch of one, no padding)."""
    llm, ids = model.model.language_model, inputs["input_ids"]
    image_token = model.config.image_token_id
    with torch.no_grad():
        features = torch.cat(model.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output)
        for _ in range(new_tokens):
            embeds = model.get_input_embeddings()(ids)
            embeds[ids == image_token] = features
            positions = torch.arange(ids.shape[1])[None]
            hidden = embeds
            for layer in llm.layers[:K]:
                hidden = layer(hidden, attention_mask=None, position_embeddings=llm.rotary_emb(hidden, positions),
                               position_ids=positions)
            images = (ids[0] == image_token).nonzero().squeeze(-1)
            keep = torch.ones(ids.shape[1], dtype=torch.bool)
            keep[images] = False
            keep[images[kept_images]] = True
            hidden, positions = hidden[:, keep], positions[:, keep]
            for layer in llm.layers[K:]:
                hidden = layer(hidden, attention_mask=None, position_embeddings=llm.rotary_emb(hidden, positions),
                               position_ids=positions)
            logits = model.lm_head(llm.norm(hidden))[:, -1]
            logits[:, image_token] = -torch.inf
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize("seed", [7, 8])
def test_cached_generation_equals_recomputing_the_pruned_prefill_each_step(tiny_llava, seed):
    model, processor = tiny_llava
    inputs = _inputs(processor, [seed])
    handle = llava_patch.apply(model, "fastv", keep=12, layer=K)
    cached = _generate(model, inputs, new_tokens=6)
    assert torch.equal(cached, _reference_generate(model, inputs, handle.last_selection[0], new_tokens=6))


def test_sdpa_and_eager_attention_generate_the_same_tokens(tiny_llava, tiny_llava_dir):
    model, processor = tiny_llava
    eager, _ = load(tiny_llava_dir, attn_implementation="eager")
    inputs = _inputs(processor, [1, 2])
    outputs = []
    for candidate in (model, eager):
        with llava_patch.apply(candidate, "fastv", reduction_ratio=0.9):
            outputs.append(_generate(candidate, inputs))
    assert torch.equal(outputs[0], outputs[1])


def test_a_padded_batch_generates_what_each_sample_generates_alone(tiny_llava):
    model, processor = tiny_llava
    llava_patch.apply(model, "fastv", reduction_ratio=0.75)
    batch_inputs = _inputs(processor, [9, 10, 11])
    assert len(set(batch_inputs["attention_mask"].sum(dim=1).tolist())) == 3  # really padded
    batch = _generate(model, batch_inputs)
    length = batch_inputs["input_ids"].shape[1]
    for row, seed in enumerate([9, 10, 11]):
        alone_inputs = _inputs(processor, [seed], questions=[QUESTIONS[row]])
        alone = _generate(model, alone_inputs)
        assert torch.equal(batch[row, length:], alone[0, alone_inputs["input_ids"].shape[1]:])


def test_samples_with_different_image_counts_keep_their_own_budgets(tiny_llava):
    model, processor = tiny_llava
    handle = llava_patch.apply(model, "fastv", reduction_ratio=0.5)
    texts = ["USER : <image> <image> what ? ASSISTANT :", prompt("colour ?")]
    inputs = processor(images=[random_image(1), random_image(2), random_image(3)], text=texts, return_tensors="pt", padding=True)
    batch = _generate(model, inputs)
    assert handle.last_visual_tokens == [64, 32]  # 128 image tokens ranked jointly, and 64
    alone = processor(images=[random_image(3)], text=[texts[1]], return_tensors="pt")
    assert torch.equal(batch[1, inputs["input_ids"].shape[1]:], _generate(model, alone)[0, alone["input_ids"].shape[1]:])


def test_budgets_and_layers_are_checked(tiny_llava):
    model, processor = tiny_llava
    with pytest.raises(ValueError, match=r"fastv layer=4 must be in \[1, 3\] for this 4-layer LLM"):
        llava_patch.apply(model, "fastv", keep=8, layer=4)
    assert "forward" not in vars(model.model.language_model) and "forward" not in vars(model)
    with pytest.raises(ValueError, match="layer must be a positive int"):
        llava_patch.apply(model, "fastv", keep=8, layer=0)
    llava_patch.apply(model, "fastv", keep=65)
    with pytest.raises(ValueError, match="fastv keep=65 exceeds the 64 image tokens of a sample"):
        with torch.no_grad():
            model(**_inputs(processor, [1]))


def test_next_crops_and_video_frames_are_ranked_jointly(tiny_next_dir, tiny_video_dir):
    from transformers import AutoProcessor, AutoTokenizer, LlavaNextForConditionalGeneration, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor

    from llava_patch.models.media import video_llava_inputs

    next_model = LlavaNextForConditionalGeneration.from_pretrained(tiny_next_dir).eval()
    next_processor = AutoProcessor.from_pretrained(tiny_next_dir)
    next_inputs = next_processor(images=[random_image(1, (60, 120)), random_image(2, (100, 50))],
                                 text=[prompt("what ?"), prompt("w1 w2")], return_tensors="pt", padding=True)
    native = (next_inputs["input_ids"] == next_model.config.image_token_id).sum(dim=1).tolist()
    with llava_patch.apply(next_model, "fastv", reduction_ratio=0.25) as handle:
        with torch.no_grad():
            next_model(**next_inputs)
        assert handle.last_visual_tokens == [llava_patch.keep_for_ratio(0.25, n) for n in native]
    video_model = VideoLlavaForConditionalGeneration.from_pretrained(tiny_video_dir).eval()
    tokenizer, image_processor = AutoTokenizer.from_pretrained(tiny_video_dir), VideoLlavaImageProcessor.from_pretrained(tiny_video_dir)
    frames = [random_image(40 + f, (60, 80)) for f in range(8)]
    video_inputs = video_llava_inputs(video_model.config, tokenizer, image_processor, ["USER : <video> what ? ASSISTANT :"], videos=[frames])
    with llava_patch.apply(video_model, "fastv", reduction_ratio=0.9) as handle:
        with torch.no_grad():
            video_model(**video_inputs)
        assert handle.last_visual_tokens == [llava_patch.keep_for_ratio(0.9, 8 * 64)]  # frame [CLS] dropped by default
    with llava_patch.apply(video_model, "fastv", reduction_ratio=0.9, keep_frame_cls=True) as handle:
        with torch.no_grad():
            video_model(**video_inputs)
        assert handle.last_visual_tokens == [llava_patch.keep_for_ratio(0.9, 8 * 65)]


def test_the_original_backend_prunes_the_same_tokens(tiny_original):
    original, converted = (load_model(path, backend=backend, device="cpu") for path, backend in zip(tiny_original, ("llava", "hf")))
    images = [random_image(1), random_image(2, (40, 90))]
    questions = ["What is shown in the image?", "Is there a dog?"]
    handles = [llava_patch.apply(vlm.model, "fastv", reduction_ratio=0.75) for vlm in (original, converted)]
    answers = [vlm.generate(images, questions, max_new_tokens=6) for vlm in (original, converted)]
    assert answers[0] == answers[1]
    assert handles[0].last_visual_tokens == handles[1].last_visual_tokens == [16, 16]
    for a, b in zip(handles[0].last_selection, handles[1].last_selection):
        assert torch.equal(a, b)
