"""The FasterVLM paper's attention analyses (llava_patch.paper.analysis): statistics against direct computations, collection on the tiny
model, and figures that are written and reproducible byte for byte."""

import math

import pytest
import torch

import llava_patch
from llava_patch.paper import analysis
from llava_patch.plotting import save_figure
from llava_patch.models.prompting import preprocess_images, tokenize_with_images, vicuna_v1_prompt
from llava_patch.models.tiny import load, random_image

# ---------------------------------------------------------------------------------------------------
# attention_shift

# 2 layers, 3 heads, 11 tokens: text 0..2, visual 3..7, text 8..10.
LENGTH, VISUAL = 11, [3, 4, 5, 6, 7]


def causal_attention(layers: int, heads: int, length: int, seed: int = 0) -> torch.Tensor:
    logits = torch.randn(layers, heads, length, length, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    return logits.masked_fill(future, -math.inf).softmax(dim=-1)


def direct_shift(attentions: torch.Tensor, visual: list[int], last: int) -> dict[str, list[list[float]]]:
    """Explicit loops: for each layer and visual key, the head mean of the mean over the group's
    queries that come at or after the key."""
    values = attentions.tolist()
    layers, heads, length = len(values), len(values[0]), len(values[0][0])
    groups = {
        "image": lambda q: q in visual,
        "text": lambda q: q not in visual,
        "last": lambda q: q == last,
        "all": lambda q: True,
    }
    result = {}
    for name, member in groups.items():
        per_layer = []
        for layer in range(layers):
            row = []
            for key in visual:
                queries = [q for q in range(length) if q >= key and member(q)]
                if not queries:
                    row.append(math.nan)
                    continue
                head_means = [sum(values[layer][h][q][key] for q in queries) / len(queries) for h in range(heads)]
                row.append(sum(head_means) / heads)
            per_layer.append(row)
        result[name] = per_layer
    return result


def visual_mask(length: int, visual: list[int]) -> torch.Tensor:
    mask = torch.zeros(length, dtype=torch.bool)
    mask[visual] = True
    return mask


@pytest.mark.parametrize("last_index", [-1, 10, 5])
def test_attention_shift_equals_a_direct_computation(last_index):
    attentions = causal_attention(2, 3, LENGTH)
    shift = analysis.attention_shift(attentions, visual_mask(LENGTH, VISUAL), last_index=last_index)
    expected = direct_shift(attentions, VISUAL, last_index % LENGTH)
    assert list(shift) == ["image", "text", "last", "all"]
    for name, values in expected.items():
        assert shift[name].shape == (2, len(VISUAL))
        torch.testing.assert_close(shift[name], torch.tensor(values, dtype=torch.float64), equal_nan=True)
    if last_index == 5:  # visual tokens 6 and 7 come after the last token: nothing to average
        assert shift["last"][:, 3:].isnan().all() and not shift["last"][:, :3].isnan().any()


def test_attention_shift_on_a_hand_computed_example():
    # One layer, one head, tokens: text, visual, text.
    attentions = torch.tensor([[[[1.0, 0.0, 0.0], [0.4, 0.6, 0.0], [0.2, 0.3, 0.5]]]])
    shift = analysis.attention_shift(attentions, torch.tensor([False, True, False]))
    assert shift["image"].tolist() == [[pytest.approx(0.6)]]  # the visual token itself
    assert shift["text"].tolist() == [[pytest.approx(0.3)]]  # only the text after it sees it
    assert shift["last"].tolist() == [[pytest.approx(0.3)]]
    assert shift["all"].tolist() == [[pytest.approx(0.45)]]


def test_attention_shift_rejects_bad_inputs():
    attentions = causal_attention(1, 1, 4)
    with pytest.raises(ValueError, match="no visual token"):
        analysis.attention_shift(attentions, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="visual_mask must be"):
        analysis.attention_shift(attentions, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="last_index"):
        analysis.attention_shift(attentions, torch.ones(4, dtype=torch.bool), last_index=4)


# ---------------------------------------------------------------------------------------------------
# attention_dispersion and tokens_for_attention_share


def test_dispersion_curve_of_a_hand_made_example():
    scores = torch.tensor([[1.0, 3.0, 0.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    # row 1 sorted 4,3,1,0 of 8 → 0.5, 0.875, 1, 1; row 2 → 0.25, 0.5, 0.75, 1; mean:
    curve = analysis.attention_dispersion(scores)
    torch.testing.assert_close(curve, torch.tensor([0.375, 0.6875, 0.875, 1.0], dtype=torch.float64))
    assert analysis.tokens_for_attention_share(curve, 0.8) == 0.75
    assert analysis.tokens_for_attention_share(curve, 0.6875) == 0.5


def test_dispersion_equals_a_direct_computation():
    scores = torch.rand(5, 7, generator=torch.Generator().manual_seed(1))
    curves = []
    for row in scores.tolist():
        ordered, total, running, curve = sorted(row, reverse=True), sum(row), 0.0, []
        for value in ordered:
            running += value / total
            curve.append(running)
        curves.append(curve)
    expected = [sum(curve[i] for curve in curves) / len(curves) for i in range(7)]
    torch.testing.assert_close(analysis.attention_dispersion(scores), torch.tensor(expected, dtype=torch.float64))


def test_tokens_for_attention_share_on_a_known_curve():
    curve = torch.tensor([0.5, 0.8, 0.95, 1.0])
    assert analysis.tokens_for_attention_share(curve) == 0.5  # default share 0.8, reached at 2 of 4 tokens
    assert analysis.tokens_for_attention_share(curve, 0.5) == 0.25
    assert analysis.tokens_for_attention_share(curve, 0.81) == 0.75
    assert analysis.tokens_for_attention_share(curve, 1.0) == 1.0
    with pytest.raises(ValueError, match="share"):
        analysis.tokens_for_attention_share(curve, 0.0)


def test_dispersion_rejects_undefined_shares():
    with pytest.raises(ValueError, match="sum to 0"):
        analysis.attention_dispersion(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        analysis.attention_dispersion(torch.tensor([[1.0, -1.0]]))


def test_grid_side():
    assert analysis.grid_side(576) == 24 and analysis.grid_side(64) == 8
    with pytest.raises(ValueError, match="square"):
        analysis.grid_side(575)


# ---------------------------------------------------------------------------------------------------
# collect on the tiny model


def instruction_sample(sample_id: str, seed: int, human: str) -> dict:
    return {"id": sample_id, "image": random_image(seed, size=(56, 56)),
            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": "an answer ."}]}


SAMPLES = [
    instruction_sample("short", 0, "<image>\nwhat is in the image ?"),
    instruction_sample("long", 1, "describe the colour of w1 w2 w3 w4 w5 w6 in the image .\n<image>"),
]


def image_after_question(question: str) -> str:
    """A template with text on both sides of the image whose image position depends on the question."""
    return f"USER : {question} <image> ASSISTANT :"


@pytest.fixture(scope="module")
def eager_tiny(tiny_llava_dir):
    return load(tiny_llava_dir, attn_implementation="eager")


@pytest.fixture(scope="module")
def records(eager_tiny):
    model, processor = eager_tiny
    return analysis.collect(model, processor, SAMPLES, build_prompt=image_after_question)


def test_collect_finds_the_visual_tokens_where_the_placeholders_are(eager_tiny, records):
    model, processor = eager_tiny
    assert records.ids == ["short", "long"]
    assert records.prompt_lengths[0] < records.prompt_lengths[1]
    for sample, positions, length in zip(SAMPLES, records.visual_positions, records.prompt_lengths):
        question = analysis.first_question(sample)
        # transformers' own processor expands the placeholder independently of collect
        input_ids = processor(images=sample["image"], text=image_after_question(question), return_tensors="pt").input_ids[0]
        assert input_ids.numel() == length
        assert torch.equal(positions, (input_ids == model.config.image_token_id).nonzero().squeeze(1))
    assert records.visual_positions[0][0] != records.visual_positions[1][0]  # the image sits after questions of different lengths
    assert records.cls_scores.shape == records.last_token_scores.shape == (2, 64)
    assert all(values.shape == (2, 4, 64) for values in records.shift.values())
    assert records.select_layer == 2 and records.last_token_layer == 1


def test_collect_equals_the_eager_attentions_of_a_direct_forward(eager_tiny, records):
    model, processor = eager_tiny
    for row, sample in enumerate(SAMPLES):
        prompt = image_after_question(analysis.first_question(sample))
        input_ids = torch.tensor([tokenize_with_images(prompt, processor.tokenizer, model.config.image_token_id, 64)])
        pixel_values = preprocess_images([sample["image"]], processor.image_processor)
        with torch.no_grad():
            attentions = model(input_ids=input_ids, pixel_values=pixel_values, output_attentions=True).attentions
            vision = model.model.vision_tower(pixel_values, output_attentions=True).attentions
        positions = records.visual_positions[row]
        torch.testing.assert_close(records.last_token_scores[row], attentions[1][0, :, -1, positions].mean(dim=0))
        shift = analysis.attention_shift(torch.cat(attentions), input_ids[0] == model.config.image_token_id)
        for name in analysis.QUERY_GROUPS:
            torch.testing.assert_close(records.shift[name][row], shift[name])
        # the [CLS] row of the select layer (hidden_states[-2] = output of layer 2 of 4), key 0 dropped
        torch.testing.assert_close(records.cls_scores[row], vision[2][0, :, 0, 1:].mean(dim=0))
    mean = records.mean_shift()
    torch.testing.assert_close(mean["text"], records.shift["text"].mean(dim=0))


def test_collect_switches_an_sdpa_language_model_to_eager_and_back(tiny_llava, records):
    model, processor = tiny_llava
    again = analysis.collect(model, processor, SAMPLES, build_prompt=image_after_question)
    assert model.config.text_config._attn_implementation == "sdpa"
    torch.testing.assert_close(again.shift["all"], records.shift["all"])
    torch.testing.assert_close(again.cls_scores, records.cls_scores)


def test_prepare_prompts_a_llava_1_5_config_with_vicuna_v1(tiny_llava):
    model, processor = tiny_llava
    assert getattr(model.config, "prompt_format", None) is None  # LLaVA-1.5's configs name no format
    inputs, _ = analysis._prepare(model, processor.tokenizer, processor.image_processor, SAMPLES[0]["image"], "what ?")
    expected = tokenize_with_images(vicuna_v1_prompt("what ?"), processor.tokenizer, model.config.image_token_id, 64)
    assert inputs["input_ids"][0].tolist() == expected


def test_collect_refuses_what_it_cannot_analyse(tiny_llava):
    model, processor = tiny_llava
    two_images = {**SAMPLES[0], "image": [random_image(0), random_image(1)]}
    with pytest.raises(ValueError, match="2 images"):
        analysis.collect(model, processor, [two_images])
    two_markers = instruction_sample("x", 0, "<image>\n<image>\nwhat ?")
    with pytest.raises(ValueError, match="2 <image> markers"):
        analysis.collect(model, processor, [two_markers])
    text_only = {"id": "t", "conversations": SAMPLES[0]["conversations"]}
    with pytest.raises(ValueError, match="no image"):
        analysis.collect(model, processor, [text_only])
    model.config.text_config.max_position_embeddings = 50  # the prompt cannot hold the image's 64 tokens
    with pytest.raises(ValueError, match="truncated"):
        analysis.collect(model, processor, SAMPLES[:1])
    model.config.text_config.max_position_embeddings = 2048
    with llava_patch.apply(model, "fastervlm", keep=8):
        with pytest.raises(RuntimeError, match="patched"):
            analysis.collect(model, processor, SAMPLES)


def test_attention_map_inputs_match_the_methods_and_collect(tiny_llava, records):
    model, processor = tiny_llava
    sample = SAMPLES[0]
    question = analysis.first_question(sample)
    maps = analysis.attention_map_inputs(model, processor, sample["image"], question, build_prompt=image_after_question)
    assert list(maps.selections) == list(analysis.DEFAULT_SELECTIONS)
    for label, (method, ratio) in analysis.DEFAULT_SELECTIONS.items():
        assert maps.selections[label].numel() == llava_patch.keep_for_ratio(ratio, 64)
    expected = maps.cls_scores.topk(llava_patch.keep_for_ratio(0.9, 64)).indices.sort().values
    assert torch.equal(maps.selections["FasterVLM 90%"], expected)
    torch.testing.assert_close(maps.cls_scores, records.cls_scores[0])
    # FastV's own last-token row (sdpa model, from q/k) equals the eager attention map's
    torch.testing.assert_close(maps.fastv_scores, records.last_token_scores[0], rtol=1e-5, atol=1e-6)
    assert maps.image.size == (56, 56)
    assert not hasattr(model, "_llava_patch_handle")


# ---------------------------------------------------------------------------------------------------
# Figures


def synthetic_records(samples: int = 3, layers: int = 4, tokens: int = 64):
    generator = torch.Generator().manual_seed(0)
    shift = {name: torch.rand(layers, tokens, generator=generator) for name in analysis.QUERY_GROUPS}
    cls_scores = torch.rand(samples, tokens, generator=generator).softmax(dim=-1)
    last_token_scores = torch.rand(samples, tokens, generator=generator).pow(4)
    return shift, cls_scores, last_token_scores


def figures():
    shift, cls_scores, last_token_scores = synthetic_records()
    selections = {"FasterVLM 75%": cls_scores[0].topk(16).indices.sort().values, "none kept": torch.tensor([], dtype=torch.long)}
    return {
        "shift_bars": analysis.shift_bars_figure(shift, cls_scores.mean(0), layer=1),
        "shift_heatmaps": analysis.shift_heatmaps_figure(shift, cls_scores.mean(0), layers=[0, 3]),
        "dispersion": analysis.dispersion_figure(cls_scores, last_token_scores),
        "attention_map": analysis.attention_map_figure(random_image(2, size=(56, 56)), cls_scores[0], selections,
                                                       fastv_scores=last_token_scores[0]),
    }


def test_every_figure_is_written_as_png_and_pdf_and_reproduces_byte_for_byte(tmp_path):
    first = {name: save_figure(figure, tmp_path / "first" / name) for name, figure in figures().items()}
    second = {name: save_figure(figure, tmp_path / "second" / name) for name, figure in figures().items()}
    for name, (png, pdf) in first.items():
        assert png.name == f"{name}.png" and pdf.name == f"{name}.pdf"
        assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
        assert png.read_bytes() == second[name][0].read_bytes()
        assert pdf.read_bytes() == second[name][1].read_bytes()


def test_figures_check_their_inputs():
    shift, cls_scores, _ = synthetic_records()
    with pytest.raises(ValueError, match="square grid"):
        analysis.shift_bars_figure({name: values[:, :63] for name, values in shift.items()}, cls_scores[0, :63], layer=0)
    with pytest.raises(ValueError, match=r"shift\['image'\]"):
        analysis.shift_heatmaps_figure(shift, cls_scores[0, :16], layers=[0])
    with pytest.raises(ValueError, match="outside"):
        analysis.attention_map_figure(random_image(0), cls_scores[0], {"bad": torch.tensor([64])})
