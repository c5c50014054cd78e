"""The vision tower: which layer feeds the projector, how many patches an image has, and the one
vision path every backend and family shares — run a ViT with a [CLS] token up to the select layer,
score the patches with the selector, keep the selected patch features.

LLaVA-1.5, LLaVA-NeXT crops and Video-LLaVA frames all go through this path; only what happens
around it differs (the model adapters). Which tower family it runs — CLIP, DINOv2 — is the encoder
adapter's business (`llava_patch.encoders`, found by `registry.find_encoder`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .cls_attention import record_cls_attention
from .methods.base import SelectionInputs, Selector
from .registry import find_encoder


@dataclass
class VisionSelection:
    features: torch.Tensor | list[torch.Tensor]  # (B, keep, D) select-layer features of the kept patches
    # (a list of (tokens, D) per image for methods whose count varies, `variable_count`)
    kept: torch.Tensor | list[torch.Tensor]  # (B, keep) kept patch indices, ascending (or per image)
    scores: torch.Tensor  # (B, P) the selector's scores
    cls_feature: torch.Tensor  # (B, 1, D) the [CLS] token's select-layer feature (Video-LLaVA can keep it)


def select_layer_index(vision_feature_layer: int, num_layers: int) -> int:
    """0-based encoder layer whose output is `hidden_states[vision_feature_layer]`.

    hidden_states[0] is the embedding output, so hidden_states[i] is the output of layer i−1 and
    hidden_states[-2] of a 24-layer tower is the output of layer 22.
    """
    if isinstance(vision_feature_layer, bool) or not isinstance(vision_feature_layer, int):
        raise ValueError(
            f"vision_feature_layer={vision_feature_layer!r}: only a single feature layer is supported "
            "(LLaVA-1.5 and later use -2)"
        )
    index = num_layers + vision_feature_layer if vision_feature_layer < 0 else vision_feature_layer - 1
    if not 0 <= index < num_layers:
        raise ValueError(
            f"vision_feature_layer={vision_feature_layer} does not name the output of an encoder layer "
            f"of this {num_layers}-layer vision tower"
        )
    return index


@dataclass(frozen=True)
class VisionGeometry:
    select_layer: int  # 0-based encoder layer whose output feeds the projector
    side: int  # patches per image (crop, frame) side

    @property
    def num_patches(self) -> int:
        return self.side**2


def llava_vision_geometry(config) -> VisionGeometry:
    """The select layer and patch grid of a transformers LLaVA-family config (LLaVA, LLaVA-NeXT,
    Video-LLaVA). Pruning needs the projector to see patch tokens only, as LLaVA-1.5 does."""
    if config.vision_feature_select_strategy != "default":
        raise ValueError(f"vision_feature_select_strategy={config.vision_feature_select_strategy!r}: pruning needs "
                         "'default' (patch tokens only, [CLS] dropped), as in LLaVA-1.5")
    vision = config.vision_config
    return VisionGeometry(select_layer_index(config.vision_feature_layer, vision.num_hidden_layers),
                          vision.image_size // vision.patch_size)


def encode_and_select(
    tower: nn.Module,
    pixel_values: torch.Tensor,
    selector: Selector,
    keep: int,
    select_layer: int,
    stop_at_select_layer: bool = True,
) -> VisionSelection:
    """Encode images, score patches and gather the kept patches' select-layer features.

    select_layer: 0-based index of the encoder layer whose output feeds the projector.
    stop_at_select_layer: skip the layers after it (their output is never used by LLaVA); False runs
        the whole tower as the original code does, for comparison.
    """
    encoder = find_encoder(tower)
    num_layers = len(encoder.layers)
    cls_layers, key_layers = selector.cls_layers(select_layer), selector.key_layers(num_layers)
    scored = {index: encoder.attention(index) for index in [*cls_layers, *key_layers]}
    last = max([select_layer, *scored]) if stop_at_select_layer else num_layers - 1
    pixel_values = pixel_values.to(encoder.device)
    with record_cls_attention(scored, frozenset(key_layers)) as (cls_rows, projections):
        hidden = encoder.embed(pixel_values)
        for index in range(last + 1):
            hidden = encoder.run_layer(index, hidden)
            if index == select_layer:
                selected = hidden
    patches = selected[:, 1:]  # [CLS] dropped, as LLaVA's select_feature="patch"
    inputs = SelectionInputs(
        cls_attention={index: cls_rows[index][:, 1:] for index in cls_layers},
        pixel_values=pixel_values,
        keep=keep,
        projections=projections,
    )
    kept, scores = selector.select(inputs, patches.shape[1])
    features = selector.merge(patches, kept, inputs)
    return VisionSelection(features=features, kept=kept, scores=scores.detach(), cls_feature=selected[:, :1])


def project(projector: nn.Module, features: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    """Projected features per image, in one projector call also when counts differ per image."""
    if isinstance(features, torch.Tensor):
        return list(projector(features))
    return list(projector(torch.cat(features)).split([len(image) for image in features]))
