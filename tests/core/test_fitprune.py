"""FitPrune inside the language model, checked against the authors' arithmetic (ywh187/FitPrune at d28e418,
`LLaVA_1.5/llava/model/language_model/modeling_llama.py`: `LlamaAttention.forward` lines 357–406, the
decoder layer 496–498, `LlamaModel.forward` 762–818), re-implemented below from reading it: eager
attention, batch of one, the image's span and count tracked as they track `left_vtoken_num`."""

import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

import llava_patch
from llava_patch.fitprune_recipe import Recipe
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import load, prompt, random_image

DELETE = [9, 0, 12, 5]  # the last layer's deletion changes nothing; the authors' code deletes there too
QUESTIONS = ["what is in the image ?", "w1 w2 w3 w4 w5 describe the image", "colour ?"]


@pytest.fixture
def recipe_file(tmp_path):
    return str(Recipe(delete=DELETE, flops_reduction_target=0.25, visual_tokens=64).save(tmp_path / "recipe.json"))


def _inputs(processor, seeds, questions=QUESTIONS):
    images = [random_image(seed, size=(48 + 9 * seed, 100 - 6 * seed)) for seed in seeds]
    return processor(images=images, text=[prompt(questions[i % 3]) for i in range(len(seeds))],
                     return_tensors="pt", padding=True)


def _generate(model, inputs, new_tokens=6):
    return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          suppress_tokens=[model.config.image_token_id], output_scores=True, return_dict_in_generate=True)


def _authors_layer(llm, index, hidden, positions, cache, image_start, left_vtoken_num, delete):
    """Their decoder layer: eager attention (softmax in fp32), then, in prefill, the `delete` visual tokens
    with the lowest cross·self score (head max) leave the attention output rows and the residual."""
    layer = llm.layers[index]
    attention, head_dim = layer.self_attn, layer.self_attn.head_dim
    residual = hidden
    x = layer.input_layernorm(hidden)
    batch, length, _ = x.shape
    q, k, v = (projection(x).view(batch, length, -1, head_dim).transpose(1, 2)
               for projection in (attention.q_proj, attention.k_proj, attention.v_proj))
    q, k = apply_rotary_pos_emb(q, k, *llm.rotary_emb(x, positions))
    if index in cache:
        k, v = torch.cat([cache[index][0], k], dim=2), torch.cat([cache[index][1], v], dim=2)
    cache[index] = (k, v)
    k, v = repeat_kv(k, attention.num_key_value_groups), repeat_kv(v, attention.num_key_value_groups)
    weights = q @ k.transpose(2, 3) * attention.scaling
    future = torch.arange(k.shape[2])[None] > torch.arange(length)[:, None] + (k.shape[2] - length)
    weights = weights.masked_fill(future, torch.finfo(weights.dtype).min).softmax(dim=-1, dtype=torch.float32)
    output = weights @ v
    keep = None
    if weights.shape[2] == weights.shape[3] and left_vtoken_num > 0 and delete:
        s, n = image_start, left_vtoken_num
        headmax = weights.max(dim=1).values.squeeze()
        self_attention = (headmax[s:s + n, s:s + n] / n).sum(dim=0)
        cross_attention = headmax[s + n:, s:s + n].sum(dim=0)
        topk = torch.sort(cross_attention * self_attention, dim=-1, stable=True).indices[:delete]
        keep = torch.ones(weights.shape[3], dtype=torch.bool)
        keep[topk + s] = False
        output, residual = output[:, :, keep], residual[:, keep]
    output = attention.o_proj(output.transpose(1, 2).reshape(batch, output.shape[2], -1))
    hidden = residual + output
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden)), keep


def _authors_generate(model, inputs, new_tokens, delete=DELETE):
    llm, ids = model.model.language_model, inputs["input_ids"]
    image_token = model.config.image_token_id
    with torch.no_grad():
        features = torch.cat(model.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output)
        hidden = model.get_input_embeddings()(ids)
        hidden[ids == image_token] = features
        image_start = int((ids[0] == image_token).nonzero()[0])
        left_vtoken_num = features.shape[0]
        origin = torch.arange(left_vtoken_num)
        positions = torch.arange(hidden.shape[1])[None]
        cache = {}
        for index in range(len(llm.layers)):
            hidden, keep = _authors_layer(llm, index, hidden, positions, cache, image_start, left_vtoken_num, delete[index])
            if keep is not None and index < len(llm.layers) - 1:  # (their last layer deletes rows nobody reads)
                origin = origin[keep[image_start:image_start + left_vtoken_num]]
                left_vtoken_num -= int((~keep).sum())
                positions = positions[:, keep]
        prompt_length = ids.shape[1]
        step_logits, tokens = [], []
        for step in range(new_tokens):
            logits = model.lm_head(llm.norm(hidden))[:, -1]
            logits[:, [image_token, model.generation_config.eos_token_id]] = -torch.inf  # as min_new_tokens does
            step_logits.append(logits)
            tokens.append(int(logits.argmax()))
            hidden = model.get_input_embeddings()(torch.tensor([[tokens[-1]]]))
            position = torch.tensor([[prompt_length + step]])  # LLaVA numbers new tokens from the unpruned prompt
            for index in range(len(llm.layers)):
                hidden, _ = _authors_layer(llm, index, hidden, position, cache, image_start, left_vtoken_num, 0)
    return origin.tolist(), step_logits, tokens


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_tokens_logits_and_answers_equal_the_authors_arithmetic(tiny_llava, recipe_file, seed):
    model, processor = tiny_llava
    inputs = _inputs(processor, [seed], questions=[QUESTIONS[seed % 3]])
    handle = llava_patch.apply(model, "fitprune", reduction_ratio=0.25, recipe=recipe_file)
    output = _generate(model, inputs)
    kept, step_logits, tokens = _authors_generate(model, inputs, new_tokens=6)
    assert handle.last_selection[0].tolist() == kept and len(kept) == 64 - 9 - 12
    assert output.sequences[0, inputs["input_ids"].shape[1]:].tolist() == tokens
    for ours, theirs in zip(output.scores, step_logits):
        finite = torch.isfinite(theirs)
        torch.testing.assert_close(ours[finite], theirs[finite], rtol=1e-4, atol=1e-4)


def test_layers_cache_what_their_attention_saw_and_counts_follow_the_recipe(tiny_llava, recipe_file):
    model, processor = tiny_llava
    inputs = _inputs(processor, [6])
    length = inputs["input_ids"].shape[1]
    handle = llava_patch.apply(model, "fitprune", keep=48, recipe=recipe_file)  # keep = round(64·(1 − 0.25))
    with torch.no_grad():
        output = model(**inputs, use_cache=True)
    assert [layer.keys.shape[-2] for layer in output.past_key_values.layers] == [length, length - 9, length - 9, length - 21]
    assert handle.last_layer_visual_tokens == [[64, 55, 55, 43]] == [handle.method_object.layer_schedule(64, 4)]
    assert handle.last_visual_tokens == [43]  # the last layer's deletion changes nothing, so it is not made
    assert handle.last_equivalent_visual_tokens == [(64 + 55 + 55 + 43) / 4]


def test_a_padded_batch_generates_what_each_sample_generates_alone(tiny_llava, recipe_file):
    model, processor = tiny_llava
    llava_patch.apply(model, "fitprune", reduction_ratio=0.25, recipe=recipe_file)
    batch_inputs = _inputs(processor, [9, 10, 11])
    assert len(set(batch_inputs["attention_mask"].sum(dim=1).tolist())) == 3  # really padded
    batch = _generate(model, batch_inputs).sequences
    length = batch_inputs["input_ids"].shape[1]
    for row, seed in enumerate([9, 10, 11]):
        alone_inputs = _inputs(processor, [seed], questions=[QUESTIONS[row]])
        alone = _generate(model, alone_inputs).sequences
        assert torch.equal(batch[row, length:], alone[0, alone_inputs["input_ids"].shape[1]:])


def test_sdpa_and_eager_attention_generate_the_same_tokens(tiny_llava, tiny_llava_dir, recipe_file):
    model, processor = tiny_llava
    eager, _ = load(tiny_llava_dir, attn_implementation="eager")
    inputs = _inputs(processor, [1, 2])
    outputs = []
    for candidate in (model, eager):
        with llava_patch.apply(candidate, "fitprune", reduction_ratio=0.25, recipe=recipe_file):
            outputs.append(_generate(candidate, inputs).sequences)
    assert torch.equal(outputs[0], outputs[1])


def test_budgets_and_recipes_are_checked(tiny_llava, recipe_file, tmp_path):
    model, _ = tiny_llava
    with pytest.raises(ValueError, match="reduction_ratio=0.5 but the recipe .*recipe.json was fitted for a FLOPs reduction of 0.25"):
        llava_patch.apply(model, "fitprune", reduction_ratio=0.5, recipe=recipe_file)
    with pytest.raises(ValueError, match=r"keep=50 but the recipe .* \(keep=48 of 64\)"):
        llava_patch.apply(model, "fitprune", keep=50, recipe=recipe_file)
    with pytest.raises(ValueError, match="keep=432 has no published recipe .* 0.1, 0.2, 0.3, .* pass recipe=FILE"):
        llava_patch.apply(model, "fitprune", keep=432)
    with pytest.raises(ValueError, match="32"):  # the authors' recipes are for LLaVA-1.5-7B's 32 layers
        llava_patch.apply(model, "fitprune", reduction_ratio=0.9)
    assert "forward" not in vars(model.model.language_model) and "forward" not in vars(model)
    with pytest.raises(FileNotFoundError):
        llava_patch.apply(model, "fitprune", reduction_ratio=0.25, recipe=str(tmp_path / "missing.json"))


def test_the_original_backend_prunes_the_same_tokens(tiny_original, tmp_path):
    recipe = str(Recipe(delete=[9, 0, 12, 5], flops_reduction_target=0.25, visual_tokens=64).save(tmp_path / "r.json"))
    original, converted = (load_model(path, backend=backend, device="cpu") for path, backend in zip(tiny_original, ("llava", "hf")))
    images = [random_image(1), random_image(2, (40, 90))]
    questions = ["What is shown in the image?", "Is there a dog?"]
    handles = [llava_patch.apply(vlm.model, "fitprune", reduction_ratio=0.25, recipe=recipe) for vlm in (original, converted)]
    answers = [vlm.generate(images, questions, max_new_tokens=6) for vlm in (original, converted)]
    assert answers[0] == answers[1]
    assert handles[0].last_visual_tokens == handles[1].last_visual_tokens == [43, 43]
    for a, b in zip(handles[0].last_selection, handles[1].last_selection):
        assert torch.equal(a, b)
