"""SparseVLM inside the language model, checked against the authors' arithmetic (Gumpest/SparseVLMs at
b72c5d6: `LlamaDynamicvitModel.forward`, `score.attn_postprocess_rank`, `utils.cluster_and_merge`),
re-implemented below from reading it: eager attention, batch of one, their KV cache and positions."""

import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

import llava_patch
from llava_patch.models.loading import load_model
from llava_patch.models.tiny import prompt, random_image

LAYERS, SCALE, BIAS = (0, 1, 2), 4.0, 0.0
QUESTIONS = ["what is in the image ?", "w1 w2 w3 w4 w5 describe the image", "colour ?"]


def _inputs(processor, seeds, questions=QUESTIONS):
    images = [random_image(seed, size=(48 + 9 * seed, 100 - 6 * seed)) for seed in seeds]
    return processor(images=images, text=[prompt(questions[i % 3]) for i in range(len(seeds))],
                     return_tensors="pt", padding=True)


def _generate(model, inputs, new_tokens=6):
    return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          suppress_tokens=[model.config.image_token_id], output_scores=True, return_dict_in_generate=True)


# --- the authors' arithmetic -------------------------------------------------------------------------

def _eager_layer(llm, index, hidden, positions, cache):
    """One decoder layer as their sdpa class computes it with output probabilities (scaled_dot_product_attention
    in utils.py): causal over the layer's cache + the new tokens, no padding (batch of one)."""
    layer = llm.layers[index]
    attention, head_dim = layer.self_attn, layer.self_attn.head_dim
    x = layer.input_layernorm(hidden)
    batch, length, _ = x.shape
    q, k, v = (projection(x).view(batch, length, -1, head_dim).transpose(1, 2)
               for projection in (attention.q_proj, attention.k_proj, attention.v_proj))
    q, k = apply_rotary_pos_emb(q, k, *llm.rotary_emb(x, positions))
    if index in cache:
        k, v = torch.cat([cache[index][0], k], dim=2), torch.cat([cache[index][1], v], dim=2)
    cache[index] = (k, v)
    k, v = repeat_kv(k, attention.num_key_value_groups), repeat_kv(v, attention.num_key_value_groups)
    logits = q @ k.transpose(2, 3) * attention.scaling
    past = k.shape[2] - length
    future = torch.arange(k.shape[2])[None] > torch.arange(length)[:, None] + past
    probabilities = logits.masked_fill(future, -torch.inf).softmax(dim=-1)
    out = attention.o_proj((probabilities @ v).transpose(1, 2).reshape(batch, length, -1))
    hidden = hidden + out
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden)), probabilities


def _authors_cluster_and_merge(x, cluster_num, generator):
    batch, count, channels = x.shape
    distance = (x[:, :, None, :] - x[:, None, :, :]).norm(dim=-1, p=2)
    dist_matrix = distance / (channels ** 0.5)
    dist_nearest, _ = torch.topk(dist_matrix, k=cluster_num, dim=-1, largest=False)
    density = (-(dist_nearest ** 2).mean(dim=-1)).exp()
    density = density + torch.rand(density.shape[-1:], generator=generator, dtype=density.dtype)[None] * 1e-6
    mask = (density[:, None, :] > density[:, :, None]).type(x.dtype)
    dist_max = dist_matrix.flatten(1).max(dim=-1)[0][:, None, None]
    dist, _ = (dist_matrix * mask + dist_max * (1 - mask)).min(dim=-1)
    _, index_down = torch.topk(dist * density, k=cluster_num, dim=-1)
    centre_rows = dist_matrix[torch.arange(batch)[:, None], index_down]
    idx_cluster = centre_rows.argmin(dim=1)
    idx_cluster[torch.zeros(cluster_num, dtype=torch.long), index_down.reshape(-1)] = torch.arange(cluster_num)
    all_weight = torch.zeros(batch * cluster_num, 1).index_add_(0, idx_cluster.reshape(-1), torch.ones(count, 1)) + 1e-6
    norm_weight = torch.ones(batch, count, 1) / all_weight[idx_cluster]
    merged = torch.zeros(batch * cluster_num, channels).index_add_(0, idx_cluster.reshape(-1),
                                                                   (x * norm_weight).reshape(count, channels))
    return merged.reshape(batch, cluster_num, channels)


def _authors_generate(model, inputs, new_tokens, layers=LAYERS, scale=SCALE, bias=BIAS, seed=0):
    """Their forward (modelling_sparse_llama.py lines 207–335) and greedy decoding with their KV cache,
    where a decoded token's position is its layer's cache length (lines 602–603). Returns the kept
    original visual tokens, the layer-averaged count they print, each step's logits and the tokens."""
    llm, ids = model.model.language_model, inputs["input_ids"]
    image_token = model.config.image_token_id
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        features = torch.cat(model.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output)
        hidden = model.get_input_embeddings()(ids)
        hidden[ids == image_token] = features
        v_token_start = int((ids[0] == image_token).nonzero()[0])
        v_token_num = features.shape[0]
        text_token_start = v_token_start + v_token_num
        origin = list(range(v_token_num))  # original index of each current visual token (-1: merged)
        v_t, t_t = hidden[:, v_token_start:text_token_start], hidden[:, text_token_start:]
        m_v_t = (v_t @ t_t.transpose(1, 2)).softmax(2).mean(1)
        t_token_idx = torch.where(m_v_t > m_v_t.mean())
        position_ids = torch.arange(hidden.shape[1])[None]
        cache, num_token = {}, []
        for index in range(len(llm.layers)):
            hidden, attn_logits = _eager_layer(llm, index, hidden, position_ids, cache)
            if index in layers:
                weights = attn_logits.mean(1)
                relation_vis_text = weights[:, t_token_idx[1] + text_token_start, v_token_start:v_token_start + v_token_num]
                rank = torch.linalg.matrix_rank(relation_vis_text.float())
                relation_vis_text = relation_vis_text.mean(1)
                s_flag = v_token_num - rank.item() != 0
                pred_score_vis = torch.zeros_like(relation_vis_text, dtype=torch.bool)
                if s_flag:
                    _, indices = torch.topk(relation_vis_text, min(int(rank.item() * scale + bias), v_token_num - 1), dim=1)
                    pred_score_vis[0][indices] = 1
                else:
                    pred_score_vis[:] = True
                policy = torch.ones(1, hidden.shape[1])
                policy[:, v_token_start:text_token_start] = pred_score_vis.float()
                select = torch.where(policy == 1)[1]
                kept_origin = [o for o, keep in zip(origin, pred_score_vis[0].tolist()) if keep]
                if s_flag:
                    total_sparse_token = hidden[:, torch.where(policy == 0)[1]]
                    stage1 = torch.where(pred_score_vis == 0)[1]
                    stage2 = relation_vis_text[0][stage1].topk(int(stage1.shape[0] * 0.3) + 1)[1]
                    to_merge = total_sparse_token[:, stage2]
                    cluster_num = int(to_merge.shape[1] / 10) + 1
                    merged = _authors_cluster_and_merge(to_merge, cluster_num, generator)
                    selected = hidden[:, select]
                    kept_count = int(pred_score_vis.sum())
                    hidden = torch.cat([selected[:, :v_token_start + kept_count], merged,
                                        selected[:, v_token_start + kept_count:]], dim=1)
                    position_ids = position_ids[:, :len(select) + cluster_num]
                    v_token_num = kept_count + cluster_num
                    origin = kept_origin + [-1] * cluster_num
                else:
                    hidden = hidden[:, select]
                    position_ids = position_ids[:, :len(select)]
                    v_token_num = int(pred_score_vis.sum())
                text_token_start = v_token_start + v_token_num
            num_token.append(v_token_num)
        step_logits, tokens = [], []
        for step in range(new_tokens):
            logits = model.lm_head(llm.norm(hidden))[:, -1]
            logits[:, [image_token, model.generation_config.eos_token_id]] = -torch.inf  # as min_new_tokens does
            step_logits.append(logits)
            tokens.append(int(logits.argmax()))
            hidden = model.get_input_embeddings()(torch.tensor([[tokens[-1]]]))
            for index in range(len(llm.layers)):
                position = torch.tensor([[cache[index][0].shape[2]]])
                hidden, _ = _eager_layer(llm, index, hidden, position, cache)
    kept = sorted(o for o in origin if o >= 0)
    return kept, sum(num_token) / len(llm.layers), step_logits, tokens


# --- tests -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [3, 4, 5])
def test_tokens_logits_and_answers_equal_the_authors_arithmetic(tiny_llava, seed):
    model, processor = tiny_llava
    inputs = _inputs(processor, [seed], questions=[QUESTIONS[seed % 3]])
    handle = llava_patch.apply(model, "sparsevlm", keep=20, layers=LAYERS, scale=SCALE, bias=BIAS)
    output = _generate(model, inputs)
    kept, equivalent, step_logits, tokens = _authors_generate(model, inputs, new_tokens=6)
    assert handle.last_selection[0].tolist() == kept
    assert handle.last_equivalent_visual_tokens == [pytest.approx(equivalent)]
    assert output.sequences[0, inputs["input_ids"].shape[1]:].tolist() == tokens
    for ours, theirs in zip(output.scores, step_logits):
        finite = torch.isfinite(theirs)
        torch.testing.assert_close(ours[finite], theirs[finite], rtol=1e-4, atol=1e-4)
    assert len(kept) < handle.last_visual_tokens[0] < 64  # pruned, and recycled tokens were added


def test_each_stage_caches_what_it_was_given_and_counts_are_recorded(tiny_llava):
    model, processor = tiny_llava
    inputs = _inputs(processor, [6])
    length = inputs["input_ids"].shape[1]
    handle = llava_patch.apply(model, "sparsevlm", keep=20, layers=(1,), scale=SCALE, bias=BIAS)
    with torch.no_grad():
        output = model(**inputs, use_cache=True)
    processed = handle.last_layer_visual_tokens[0]
    kept = processed[2]
    assert processed == [64, 64, kept, kept] and kept < 64
    assert [layer.keys.shape[-2] for layer in output.past_key_values.layers] == [length, length] + [length - 64 + kept] * 2
    assert handle.last_visual_tokens == [kept]
    # the authors' count: each layer's visual tokens after its pruning (layer 1 counts what it kept)
    assert handle.last_equivalent_visual_tokens == [(64 + 3 * kept) / 4]


def test_a_padded_batch_generates_what_each_sample_generates_alone(tiny_llava):
    model, processor = tiny_llava
    handle = llava_patch.apply(model, "sparsevlm", keep=20, layers=LAYERS, scale=SCALE, bias=BIAS)
    batch_inputs = _inputs(processor, [9, 10, 11])
    assert len(set(batch_inputs["attention_mask"].sum(dim=1).tolist())) == 3  # really padded
    batch = _generate(model, batch_inputs).sequences
    batch_counts = handle.last_visual_tokens
    length = batch_inputs["input_ids"].shape[1]
    for row, seed in enumerate([9, 10, 11]):
        alone_inputs = _inputs(processor, [seed], questions=[QUESTIONS[row]])
        alone = _generate(model, alone_inputs).sequences
        assert torch.equal(batch[row, length:], alone[0, alone_inputs["input_ids"].shape[1]:])
        assert handle.last_visual_tokens == [batch_counts[row]]


def test_sdpa_and_eager_attention_generate_the_same_tokens(tiny_llava, tiny_llava_dir):
    from llava_patch.models.tiny import load

    model, processor = tiny_llava
    eager, _ = load(tiny_llava_dir, attn_implementation="eager")
    inputs = _inputs(processor, [1, 2])
    outputs = []
    for candidate in (model, eager):
        with llava_patch.apply(candidate, "sparsevlm", keep=20, layers=LAYERS, scale=SCALE, bias=BIAS):
            outputs.append(_generate(candidate, inputs).sequences)
    assert torch.equal(outputs[0], outputs[1])


def test_budgets_settings_and_layers_are_checked(tiny_llava):
    model, processor = tiny_llava
    with pytest.raises(ValueError, match="keep=432 has no published scale/bias .* 192, 128, 64"):
        llava_patch.apply(model, "sparsevlm", keep=432)
    with pytest.raises(ValueError, match="give both scale and bias"):
        llava_patch.apply(model, "sparsevlm", keep=20, scale=2.0)
    with pytest.raises(ValueError, match="pruning after decoder layer 3 needs a layer after it"):
        llava_patch.apply(model, "sparsevlm", keep=20, layers=(1, 3), scale=1.0, bias=0.0)
    assert "forward" not in vars(model.model.language_model) and "forward" not in vars(model)
    handle = llava_patch.apply(model, "sparsevlm", keep=128)
    assert handle.method_object.settings() == (9.0, 6.0)  # the authors' README: 128 tokens ↔ scale 9, bias 6
    # the authors' layers on LLMs deeper than 20 layers; the same fractions of 32 on shallower ones
    assert [handle.method_object.pruning_layers(n) for n in (40, 30, 16, 4)] == [[2, 6, 15, 19]] * 2 + [[1, 3, 8, 10], [0, 1, 2]]


def test_the_original_backend_prunes_the_same_tokens(tiny_original):
    original, converted = (load_model(path, backend=backend, device="cpu") for path, backend in zip(tiny_original, ("llava", "hf")))
    images = [random_image(1), random_image(2, (40, 90))]
    questions = ["What is shown in the image?", "Is there a dog?"]
    handles = [llava_patch.apply(vlm.model, "sparsevlm", keep=20, layers=LAYERS, scale=SCALE, bias=BIAS)
               for vlm in (original, converted)]
    answers = [vlm.generate(images, questions, max_new_tokens=6) for vlm in (original, converted)]
    assert answers[0] == answers[1]
    assert handles[0].last_visual_tokens == handles[1].last_visual_tokens
    assert handles[0].last_layer_visual_tokens == handles[1].last_layer_visual_tokens
    for a, b in zip(handles[0].last_selection, handles[1].last_selection):
        assert torch.equal(a, b)


def test_a_settings_file_prunes_as_its_scale_and_bias(tiny_llava, tmp_path):
    """`settings=FILE` (written by `llava-patch sparsevlm-calibrate`) is its scale and bias, at its `keep`."""
    from llava_patch.calibration.sparsevlm import FORMAT, save_settings

    model, processor = tiny_llava
    path = save_settings({"format": FORMAT, "format_version": 1, "method": "sparsevlm", "keep": 20, "scale": SCALE,
                          "bias": BIAS, "options": {"layers": list(LAYERS)}, "model": {"layers": 4}}, tmp_path / "s.json")
    inputs = _inputs(processor, [7, 8])
    runs = []
    for options in ({"scale": SCALE, "bias": BIAS}, {"settings": str(path)}):
        with llava_patch.apply(model, "sparsevlm", keep=20, layers=LAYERS, **options) as handle:
            runs.append((_generate(model, inputs).sequences, handle.last_equivalent_visual_tokens,
                         handle.last_layer_visual_tokens))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1:] == runs[1][1:]
    with pytest.raises(ValueError, match=rf"keep=192 but the settings {path} were calibrated for keep=20"):
        llava_patch.apply(model, "sparsevlm", keep=192, layers=LAYERS, settings=str(path))
    with pytest.raises(ValueError, match="settings=FILE from `llava-patch sparsevlm-calibrate`"):
        llava_patch.apply(model, "sparsevlm", keep=432)
    with pytest.raises(FileExistsError, match="s.json: already exists; the settings are not overwritten"):
        save_settings({}, path)
