"""The FasterVLM paper's attention analyses (arXiv 2412.01818, its analysis section; how this project
reads attention is in docs/methods.md and docs/decisions.md §4): attention shift, attention
dispersion, and attention maps, with the figures that show them.

- **Attention shift**: per LLM layer, how much attention each visual token receives from image
  queries, text queries, the last token and all queries, against the vision tower's [CLS] attention.
  The paper's claim: text→visual attention drifts toward later (lower-in-image) tokens, [CLS]
  attention does not.
- **Attention dispersion**: how concentrated a score vector is — the fraction of attention held by
  the top fraction of tokens ([CLS] attention vs the last token's attention in LLM layer index 1,
  FastV's scoring layer).
- **Attention maps**: the [CLS] heat map over the image, the tokens each [CLS]-attention method of
  the registry keeps (FasterVLM, VTC-CLS), and FastV's last-token attention for contrast.

The statistics (`attention_shift`, `attention_dispersion`, `tokens_for_attention_share`) are pure
functions on tensors. `collect` runs an unpatched transformers `LlavaForConditionalGeneration` once
per sample of LLaVA's instruction data and gathers their inputs; visual token positions always come
from the real `input_ids`, and prompts use the model config's format (`prompt_builder`: vicuna_v1 for
LLaVA-1.5, ChatML for the toy LLaVA). `photo_samples` turns the toy's real photographs into such
samples. Figures are built as `matplotlib.figure.Figure` objects (Agg renderer, no
pyplot state) and written by `llava_patch.plotting.save_figure` as PNG and PDF without timestamps, so the same inputs give
the same bytes.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from PIL import Image
from torch import nn
from transformers import LlavaForConditionalGeneration

from ..cls_attention import record_cls_attention
from ..registry import create_method, find_encoder, method_info, methods
from ..models.media import read_image
from ..patch import apply, get_handle
from ..models import toy_parts
from ..models.prompting import IMAGE_TOKEN, expand_to_square, preprocess_images, prompt_builder, tokenize_with_images
from ..tower import llava_vision_geometry

QUERY_GROUPS = ("image", "text", "last", "all")
QUERY_LABELS = {"image": "image → visual", "text": "text → visual", "last": "last token → visual", "all": "all → visual"}
FASTV_SCORING_LAYER = 1  # FastV (K=2) ranks image tokens by the last token's attention in layer K−1
SELECTION_RATIOS = (0.75, 0.90, 0.95)
METHOD_LABELS = {"fastervlm": "FasterVLM", "vtc_cls": "VTC-CLS"}  # how the papers write them (else the name)
_LLAVA_SELECT_LAYER = 22  # LLaVA-1.5's select layer on its 24-layer tower
PHOTO_QUESTIONS = ("What is in the image?", "Describe the image briefly.")  # asked of the photos in turn


def cls_attention_methods() -> list[str]:
    """The registered methods the attention maps show: vision-stage methods that take a reduction ratio
    and rank patches by the [CLS] attention (they ask for at least one layer's [CLS] row)."""
    return [name for name in methods()
            if (info := method_info(name)).stage == "vision" and info.takes_reduction_ratio
            and create_method(name, {}).cls_layers(_LLAVA_SELECT_LAYER)]


DEFAULT_SELECTIONS: dict[str, tuple[str, float]] = {
    f"{METHOD_LABELS.get(method, method)} {ratio:.0%}": (method, ratio)
    for method in cls_attention_methods()
    for ratio in SELECTION_RATIOS
}


# ---------------------------------------------------------------------------------------------------
# Statistics


def attention_shift(attentions: torch.Tensor, visual_mask: torch.Tensor, last_index: int = -1) -> dict[str, torch.Tensor]:
    """Mean attention each visual token receives, per layer, from four groups of queries.

    attentions: one sample's post-softmax causal attention maps, (layers, heads, L, L) as
        [layer, head, query, key]; one unpadded sequence.
    visual_mask: (L,) bool, True at the visual-token positions of that sequence.
    last_index: position of the last token (default: the last position).

    Returns {"image", "text", "last", "all"} → (layers, n_visual) float tensors: for visual token k,
    the mean of attention[·, ·, q, k] over the queries q of the group that can causally see k
    (q ≥ k: image queries, text queries, only `last_index`, every query), then over heads. NaN where
    no query of the group sees k (e.g. a visual token after `last_index`).
    """
    if attentions.ndim != 4 or attentions.shape[-1] != attentions.shape[-2]:
        raise ValueError(f"attentions must be (layers, heads, L, L), got {tuple(attentions.shape)}")
    length = attentions.shape[-1]
    visual_mask = visual_mask.to(device=attentions.device, dtype=torch.bool)
    if visual_mask.shape != (length,):
        raise ValueError(f"visual_mask must be ({length},) for sequences of length {length}, got {tuple(visual_mask.shape)}")
    if not visual_mask.any():
        raise ValueError("visual_mask marks no visual token")
    if not -length <= last_index < length:
        raise ValueError(f"last_index={last_index} is outside a sequence of length {length}")
    last_index %= length
    dtype = torch.promote_types(attentions.dtype, torch.float32)
    head_mean = attentions.to(dtype).mean(dim=1)  # (layers, L queries, L keys); linear, so order is free
    visual = visual_mask.nonzero().squeeze(1)
    received = head_mean[:, :, visual]  # (layers, L queries, n_visual)
    positions = torch.arange(length, device=attentions.device)
    sees = positions[:, None] >= visual[None, :]  # (L queries, n_visual): query q can see visual key k
    groups = {
        "image": visual_mask,
        "text": ~visual_mask,
        "last": positions == last_index,
        "all": torch.ones_like(visual_mask),
    }
    shift = {}
    for name in QUERY_GROUPS:
        weights = (sees & groups[name][:, None]).to(dtype)
        shift[name] = (received * weights).sum(dim=1) / weights.sum(dim=0)  # 0/0 → NaN where unseen
    return shift


def attention_dispersion(scores: torch.Tensor) -> torch.Tensor:
    """Mean cumulative share of attention held by each sample's top tokens.

    scores: (samples, n) non-negative attention scores (e.g. [CLS] attention over the patches, or the
    last token's attention over the image tokens). Each row is sorted descending, normalised to sum 1
    and cumulated; the curves are averaged over samples. Returns (n,) float64: element i is the
    fraction of attention held by the top (i+1)/n fraction of tokens (the last element is 1).
    """
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must be (samples, n) with n ≥ 1, got {tuple(scores.shape)}")
    scores = scores.detach().to(torch.float64)
    if (scores < 0).any():
        raise ValueError("attention scores must be non-negative")
    totals = scores.sum(dim=1, keepdim=True)
    if (totals == 0).any():
        raise ValueError("a sample's scores sum to 0: its attention shares are undefined")
    shares = scores.sort(dim=1, descending=True).values / totals
    return shares.cumsum(dim=1).mean(dim=0)


def tokens_for_attention_share(curve: torch.Tensor, share: float = 0.8) -> float:
    """Smallest fraction of tokens (k/n) whose cumulative attention `curve` (from `attention_dispersion`)
    reaches `share` of the attention."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    if curve.ndim != 1 or curve.numel() == 0:
        raise ValueError(f"curve must be a non-empty 1-D tensor, got {tuple(curve.shape)}")
    reached = (curve >= share).nonzero()
    if reached.numel() == 0:  # only by rounding: the curve ends at 1
        return 1.0
    return (int(reached[0, 0]) + 1) / curve.numel()


def grid_side(num_tokens: int) -> int:
    """Side of the square patch grid of `num_tokens` visual tokens (24 for LLaVA-1.5's 576)."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{num_tokens} visual tokens do not form a square grid; pass grid= explicitly")
    return side


# ---------------------------------------------------------------------------------------------------
# Collection on a real model


@dataclass
class AttentionRecords:
    """What `collect` gathered, per sample (rows in sample order)."""

    ids: list  # each sample's "id" (None where it has none)
    visual_positions: list[torch.Tensor]  # positions of the image tokens in the sample's input_ids
    prompt_lengths: list[int]  # tokens in each prompt
    cls_scores: torch.Tensor  # (samples, n_visual): head-mean [CLS] attention of the select layer over patches
    shift: dict[str, torch.Tensor]  # QUERY_GROUPS → (samples, LLM layers, n_visual), from `attention_shift`
    last_token_scores: torch.Tensor  # (samples, n_visual): head-mean attention of the last token in `last_token_layer`
    select_layer: int  # 0-based vision layer the [CLS] scores come from
    last_token_layer: int  # 0-based LLM layer of `last_token_scores`

    def mean_shift(self) -> dict[str, torch.Tensor]:
        """Shift statistics averaged over samples: QUERY_GROUPS → (LLM layers, n_visual)."""
        return {name: values.nanmean(dim=0) for name, values in self.shift.items()}


def first_question(sample: Mapping) -> str:
    """The first human turn of a LLaVA instruction sample, "<image>" removed (LLaVA's training code
    moves the image to the front of that turn; the prompt template puts it back there)."""
    turns = [turn for turn in sample.get("conversations", []) if turn.get("from") == "human"]
    if not turns:
        raise ValueError(f"sample {sample.get('id')!r} has no human turn in 'conversations'")
    text = turns[0]["value"]
    images = text.count(IMAGE_TOKEN)
    if images != 1:
        raise ValueError(f"sample {sample.get('id')!r}: the first human turn has {images} {IMAGE_TOKEN} markers; "
                         "the analyses take samples with exactly one image")
    return text.replace(IMAGE_TOKEN, "").strip()


def sample_image(sample: Mapping, image_root: str | Path | None = None) -> Image.Image:
    """The one image of a LLaVA instruction sample: its "image" entry, a path (relative to
    `image_root`, LLaVA's --image_folder) or a PIL image. Several images are refused."""
    image = sample.get("image")
    if isinstance(image, (list, tuple)):
        if len(image) != 1:
            raise ValueError(f"sample {sample.get('id')!r} has {len(image)} images; the analyses take one image per sample")
        image = image[0]
    if image is None:
        raise ValueError(f"sample {sample.get('id')!r} has no image")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return read_image(Path(image_root) / image if image_root is not None else Path(image))


def photo_samples() -> tuple[list[dict], Path]:
    """The toy's real photographs (`toy_parts.photos()`: astronaut, chelsea, coffee, rocket) as LLaVA
    instruction samples, each asking one of `PHOTO_QUESTIONS` in turn and keeping its photo's credit
    ("credit"); with the folder their image paths are relative to (LLaVA's --image_folder), so the
    samples name the photos without this machine's paths."""
    root = toy_parts.parts_folder()
    samples = [
        {"id": name, "image": str(path.relative_to(root)), "credit": credit,
         "conversations": [{"from": "human", "value": f"{IMAGE_TOKEN}\n{PHOTO_QUESTIONS[index % len(PHOTO_QUESTIONS)]}"}]}
        for index, (name, (path, credit)) in enumerate(toy_parts.photos().items())
    ]
    return samples, root


def collect(
    model: LlavaForConditionalGeneration,
    processor,
    samples: Iterable[Mapping],
    image_root: str | Path | None = None,
    last_token_layer: int = FASTV_SCORING_LAYER,
    build_prompt: Callable[[str], str] | None = None,
    progress: bool = False,
) -> AttentionRecords:
    """Run `model` once per sample and gather the inputs of the attention analyses.

    samples: LLaVA instruction samples (llava_v1_5_mix665k layout): {"id", "image": path or PIL image,
        "conversations": [{"from": "human", "value": "<image>\\n…"}, …]}; the first human turn is
        the question. Samples with several images, or whose image tokens do not all reach the
        prompt, raise ValueError.
    build_prompt: question → prompt with one "<image>" (default: the model config's prompt format,
        `prompt_builder`: vicuna_v1 for LLaVA-1.5, ChatML for the toy LLaVA).
    Images are padded to a square (`image_aspect_ratio=pad`) and tokens built as LLaVA's
    `tokenizer_image_token` (`llava_patch.models.prompting`), as in evaluation.

    The language model runs with eager attention for these calls (transformers returns no attention
    maps from sdpa/flash): it is switched with `set_attn_implementation` and switched back afterwards.
    The vision tower keeps its kernel; the [CLS] row of its select layer comes from the same q/k hooks
    the pruning methods use (`llava_patch.cls_attention`).
    """
    _check_unpatched(model)
    tokenizer, image_processor = processor.tokenizer, processor.image_processor
    num_layers = model.config.text_config.num_hidden_layers
    if not 0 <= last_token_layer < num_layers:
        raise ValueError(f"last_token_layer={last_token_layer} is outside the {num_layers}-layer language model")
    ids, positions, lengths, cls_rows, last_rows = [], [], [], [], []
    shift: dict[str, list[torch.Tensor]] = {name: [] for name in QUERY_GROUPS}
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, desc="attention analyses", unit="sample")
    with _eager_language_model(model), _recording_cls_scores(model) as take_cls_scores, torch.no_grad():
        for sample in samples:
            inputs, visual = _prepare(model, tokenizer, image_processor, sample_image(sample, image_root),
                                      first_question(sample), build_prompt, sample.get("id"))
            output = model(**inputs, output_attentions=True, use_cache=False, logits_to_keep=1)
            if not output.attentions:
                raise RuntimeError("the language model returned no attention maps; it must run eager attention")
            # heads averaged layer by layer (the statistics are linear in them): (layers, 1, L, L), not
            # a stacked copy of every head of every layer
            head_mean = torch.stack([layer[0].float().mean(dim=0, keepdim=True) for layer in output.attentions])
            visual_mask = inputs["input_ids"][0] == model.config.image_token_id
            for name, values in attention_shift(head_mean, visual_mask).items():
                shift[name].append(values.cpu())
            ids.append(sample.get("id"))
            positions.append(visual.cpu())
            lengths.append(inputs["input_ids"].shape[1])
            cls_rows.append(take_cls_scores()[0].cpu())
            last_rows.append(head_mean[last_token_layer, 0, -1, visual].cpu())
    if not ids:
        raise ValueError("no samples given")
    return AttentionRecords(
        ids=ids, visual_positions=positions, prompt_lengths=lengths, cls_scores=torch.stack(cls_rows),
        shift={name: torch.stack(values) for name, values in shift.items()},
        last_token_scores=torch.stack(last_rows), select_layer=llava_vision_geometry(model.config).select_layer, last_token_layer=last_token_layer,
    )


def _check_unpatched(model: nn.Module) -> None:
    if not isinstance(model, LlavaForConditionalGeneration):
        raise TypeError(f"the analyses run on transformers LlavaForConditionalGeneration, not {type(model).__name__}")
    handle = get_handle(model)
    if handle is not None:
        raise RuntimeError(f"the model is patched ({handle!r}); the analyses need the unpruned model: remove the patch")
    if model.config.vision_feature_select_strategy != "default":
        raise ValueError("the analyses need vision_feature_select_strategy='default' (one image token per patch)")




@contextmanager
def _eager_language_model(model: LlavaForConditionalGeneration) -> Iterator[None]:
    """Eager attention in the language model for the duration; its previous implementation afterwards."""
    previous = model.config.text_config._attn_implementation
    model.set_attn_implementation({"text_config": "eager"})
    try:
        yield
    finally:
        model.set_attn_implementation({"text_config": previous})


@contextmanager
def _recording_cls_scores(model: LlavaForConditionalGeneration) -> Iterator[Callable[[], torch.Tensor]]:
    """While active, vision forwards record the select layer's [CLS] row; the yielded function takes
    the latest: (images, patches) head-mean [CLS] attention over the patch tokens ([CLS]→[CLS]
    dropped, no renormalisation)."""
    select_layer = llava_vision_geometry(model.config).select_layer
    attention = find_encoder(model.model.vision_tower).attention(select_layer)
    with record_cls_attention({select_layer: attention}) as (rows, _projections):
        yield lambda: rows.pop(select_layer)[:, 1:]


def _prepare(model: LlavaForConditionalGeneration, tokenizer, image_processor, image: Image.Image, question: str,
             build_prompt: Callable[[str], str] | None = None, sample_id=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Model inputs of one (image, question) pair and the positions of its image tokens in input_ids.
    build_prompt: None for the model config's own prompt format (as evaluation prompts it)."""
    prefix = f"sample {sample_id!r}: " if sample_id is not None else ""
    prompt = (build_prompt or prompt_builder(model.config))(question)
    if prompt.count(IMAGE_TOKEN) != 1:
        raise ValueError(f"{prefix}the prompt has {prompt.count(IMAGE_TOKEN)} {IMAGE_TOKEN} markers, not 1")
    num_patches, image_token_id = llava_vision_geometry(model.config).num_patches, model.config.image_token_id
    input_ids = torch.tensor([tokenize_with_images(prompt, tokenizer, image_token_id, num_patches)])
    visual = (input_ids[0] == image_token_id).nonzero().squeeze(1)
    limit = model.config.text_config.max_position_embeddings
    if visual.numel() != num_patches or input_ids.shape[1] > limit:
        raise ValueError(f"{prefix}{visual.numel()} of {num_patches} image tokens in a prompt of "
                         f"{input_ids.shape[1]} tokens (limit {limit}); truncated or extra images are refused")
    if int(visual[-1] - visual[0]) != num_patches - 1:
        raise ValueError(f"{prefix}the image tokens are not one contiguous run")
    pixel_values = preprocess_images([image], image_processor).to(model.device, model.dtype)
    inputs = {"input_ids": input_ids.to(model.device), "attention_mask": torch.ones_like(input_ids).to(model.device),
              "pixel_values": pixel_values}
    return inputs, visual.to(model.device)


@dataclass
class AttentionMapInputs:
    """Everything `attention_map_figure` shows for one image and question."""

    image: Image.Image  # the image as the vision tower saw it: padded to a square (image_aspect_ratio=pad)
    cls_scores: torch.Tensor  # (patches,) head-mean [CLS] attention of the select layer
    selections: dict[str, torch.Tensor]  # label → kept patch indices, ascending (raster order)
    fastv_scores: torch.Tensor  # (patches,) FastV's score: the last token's attention over the image tokens


def attention_map_inputs(
    model: LlavaForConditionalGeneration,
    processor,
    image: Image.Image,
    question: str,
    selections: Mapping[str, tuple[str, float]] = DEFAULT_SELECTIONS,
    fastv_layer: int = FASTV_SCORING_LAYER + 1,
    build_prompt: Callable[[str], str] | None = None,
) -> AttentionMapInputs:
    """Run the pruning methods on one image and question and keep what they selected.

    selections: label → (method, reduction_ratio), each run through `llava_patch.apply` (the patch is
    removed afterwards) and read from `handle.last_selection`. FastV (pruning at LLM layer
    `fastv_layer`) gives the last token's attention in layer `fastv_layer`−1 from `handle.last_scores`;
    that score does not depend on its budget.
    """
    _check_unpatched(model)
    image = image.convert("RGB")
    inputs, _ = _prepare(model, processor.tokenizer, processor.image_processor, image, question, build_prompt)
    kept = {}
    with torch.no_grad():
        with _recording_cls_scores(model) as take_cls_scores:
            model.model.vision_tower(inputs["pixel_values"])
            cls_scores = take_cls_scores()[0].cpu()
        for label, (method, reduction_ratio) in selections.items():
            with apply(model, method, reduction_ratio=reduction_ratio) as handle:
                model(**inputs, use_cache=False, logits_to_keep=1)
                kept[label] = handle.last_selection[0].cpu()
        with apply(model, "fastv", keep=1, layer=fastv_layer) as handle:
            model(**inputs, use_cache=False, logits_to_keep=1)
            fastv_scores = handle.last_scores[0].cpu()
    background = tuple(int(channel * 255) for channel in processor.image_processor.image_mean)
    return AttentionMapInputs(expand_to_square(image, background), cls_scores, kept, fastv_scores)


# ---------------------------------------------------------------------------------------------------
# Figures


def shift_bars_figure(shift: Mapping[str, torch.Tensor], cls_scores: torch.Tensor, layer: int,
                      grid: int | None = None) -> Figure:
    """Per-token bars: the attention each visual token receives in LLM layer `layer` from each query
    group, and the [CLS] attention, with a separator at every image row (`grid` tokens).

    shift: QUERY_GROUPS → (LLM layers, n_visual), e.g. `AttentionRecords.mean_shift()`;
    cls_scores: (n_visual,), e.g. `records.cls_scores.mean(0)`.
    """
    count = _check_visual_scores(shift, cls_scores)
    grid = grid or grid_side(count)
    rows = [(f"{QUERY_LABELS[name]} (LLM layer {layer})", shift[name][layer]) for name in QUERY_GROUPS]
    rows.append(("[CLS] → patches (vision select layer)", cls_scores))
    figure = Figure(figsize=(12, 1.7 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), 1, sharex=True)
    for axis, (title, values) in zip(axes, rows):
        axis.bar(np.arange(count), _numpy(values), width=1.0, color="tab:blue" if "CLS" not in title else "tab:orange")
        for boundary in range(grid, count, grid):
            axis.axvline(boundary - 0.5, color="grey", linewidth=0.5)
        axis.set_title(title, fontsize=9, loc="left")
        axis.set_ylabel("attention", fontsize=8)
        axis.set_xlim(-0.5, count - 0.5)
    axes[-1].set_xlabel(f"visual token (raster order; a line every {grid} tokens = one image row)")
    return figure


def shift_heatmaps_figure(shift: Mapping[str, torch.Tensor], cls_scores: torch.Tensor, layers: Sequence[int],
                          query: str = "text", grid: int | None = None) -> Figure:
    """Grid heat maps: the attention the visual tokens receive from `query` ("text" by default) in
    each of `layers`, beside the [CLS] attention, each over the grid×grid patch layout."""
    if query not in QUERY_GROUPS:
        raise ValueError(f"query must be one of {QUERY_GROUPS}, got {query!r}")
    count = _check_visual_scores(shift, cls_scores)
    grid = grid or grid_side(count)
    panels = [(f"{QUERY_LABELS[query]}\nLLM layer {layer}", shift[query][layer]) for layer in layers]
    panels.append(("[CLS] → patches\nvision select layer", cls_scores))
    figure = Figure(figsize=(3.1 * len(panels), 3.0), layout="constrained")
    for axis, (title, values) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        shown = axis.imshow(_numpy(values).reshape(grid, grid), cmap="viridis", interpolation="nearest")
        figure.colorbar(shown, ax=axis, shrink=0.8)
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    return figure


def dispersion_figure(cls_scores: torch.Tensor, last_token_scores: torch.Tensor, share: float = 0.8,
                      labels: tuple[str, str] = ("[CLS] attention", f"last-token attention, LLM layer {FASTV_SCORING_LAYER}"),
                      bins: int = 50) -> Figure:
    """Cumulative attention curves (fraction of tokens vs fraction of attention, `attention_dispersion`)
    of the two score sets, with the fraction of tokens that holds `share` of the attention marked;
    and histograms of their raw values (log counts). Both inputs: (samples, n)."""
    figure = Figure(figsize=(13, 3.6), layout="constrained")
    curve_axis, *histogram_axes = figure.subplots(1, 3)
    for scores, label, colour, histogram_axis in zip((cls_scores, last_token_scores), labels,
                                                      ("tab:orange", "tab:blue"), histogram_axes):
        curve = attention_dispersion(scores)
        needed = tokens_for_attention_share(curve, share)
        fractions = np.arange(1, curve.numel() + 1) / curve.numel()
        curve_axis.plot(fractions, curve.numpy(), color=colour, label=f"{label}: {needed:.0%} of tokens hold {share:.0%}")
        curve_axis.axvline(needed, color=colour, linestyle=":", linewidth=1)
        histogram_axis.hist(_numpy(scores).ravel(), bins=bins, color=colour)
        histogram_axis.set_yscale("log")
        histogram_axis.set(title=f"{label} ({scores.shape[0]} samples)", xlabel="attention value", ylabel="tokens")
    curve_axis.axhline(share, color="black", linestyle="--", linewidth=0.8)
    curve_axis.set(xlabel="fraction of tokens (highest first)", ylabel="fraction of attention", xlim=(0, 1), ylim=(0, 1.01))
    curve_axis.legend(fontsize=7, loc="lower right")
    return figure


def attention_map_figure(image: Image.Image | np.ndarray, cls_scores: torch.Tensor,
                         selections: Mapping[str, torch.Tensor], fastv_scores: torch.Tensor | None = None,
                         grid: int | None = None, columns: int = 5) -> Figure:
    """The image; the [CLS] heat map upsampled over it; for each selection (label → kept patch
    indices) the image with the dropped patches darkened; and FastV's last-token attention over the
    same image. `image` must be what the tower saw (square, e.g. `AttentionMapInputs.image`)."""
    count = cls_scores.numel()
    grid = grid or grid_side(count)
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    extent = (0, pixels.shape[1], pixels.shape[0], 0)
    panels: list[tuple[str, str | None, torch.Tensor | None]] = [("image", None, None), ("[CLS] attention", "heat", cls_scores)]
    panels += [(f"{label}: {kept.numel()} kept", "kept", kept) for label, kept in selections.items()]
    if fastv_scores is not None:
        panels.append(("last-token attention (FastV)", "heat", fastv_scores))
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(2.6 * columns, 2.8 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis in axes:
        axis.set_axis_off()
    for axis, (title, kind, values) in zip(axes, panels):
        axis.imshow(pixels, extent=extent)
        if kind == "heat":
            if values.numel() != count:
                raise ValueError(f"{title}: {values.numel()} scores for {count} patches")
            axis.imshow(_numpy(values).reshape(grid, grid), extent=extent, cmap="jet", alpha=0.5, interpolation="bilinear")
        elif kind == "kept":
            if values.numel() and not (0 <= int(values.min()) and int(values.max()) < count):
                raise ValueError(f"{title}: kept indices outside [0, {count})")
            dropped = np.ones(count, dtype=bool)
            dropped[_numpy(values).astype(np.int64)] = False
            axis.imshow(dropped.reshape(grid, grid), extent=extent, cmap=_DROPPED_SHADE, vmin=0, vmax=1,
                        interpolation="nearest")
        axis.set_title(title, fontsize=8)
    return figure


_DROPPED_SHADE = ListedColormap([(0, 0, 0, 0), (0, 0, 0, 0.8)])  # kept: transparent, dropped: darkened


def _check_visual_scores(shift: Mapping[str, torch.Tensor], cls_scores: torch.Tensor) -> int:
    """The number of visual tokens, after checking the shift statistics and [CLS] scores agree on it."""
    count = cls_scores.numel()
    for name in QUERY_GROUPS:
        if shift[name].ndim != 2 or shift[name].shape[1] != count:
            raise ValueError(f"shift[{name!r}] must be (layers, {count}), got {tuple(shift[name].shape)}")
    return count


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().cpu().to(torch.float64).numpy()
