"""LLaVA-1.5 on Hugging Face transformers (`LlavaForConditionalGeneration`): one 336-px image → its
`keep` patch tokens, projected after selection."""

from __future__ import annotations

from torch import nn
from transformers import LlavaForConditionalGeneration

from ..registry import register_adapter
from ..vision import clip_encoder, encode_and_select, project
from .base import select_layer_index
from .hf_base import EncodedItems, HFAdapter


@register_adapter
class HFLlavaAdapter(HFAdapter):
    model_description = "transformers LlavaForConditionalGeneration (LLaVA-1.5) with a CLIP vision tower"
    accepts_variable_counts = True

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return isinstance(model, LlavaForConditionalGeneration)

    def __init__(self, model: LlavaForConditionalGeneration) -> None:
        super().__init__(model)
        config = model.config
        if config.vision_feature_select_strategy != "default":
            raise ValueError(
                f"vision_feature_select_strategy={config.vision_feature_select_strategy!r}: pruning needs "
                "'default' (patch tokens only, [CLS] dropped), as in LLaVA-1.5"
            )
        self.tower = model.model.vision_tower
        clip_encoder(self.tower)
        vision_config = config.vision_config
        self.select_layer = select_layer_index(config.vision_feature_layer, vision_config.num_hidden_layers)
        self.num_patches = (vision_config.image_size // vision_config.patch_size) ** 2

    def encode(self, arguments: dict) -> list[EncodedItems]:
        handle = self.handle
        selection = encode_and_select(self.tower, arguments["pixel_values"], handle.selector, handle.vision_keep,
                                      self.select_layer, handle.stop_at_select_layer)
        handle.record(list(selection.kept), list(selection.scores))
        features = project(self.model.model.multi_modal_projector, selection.features)
        return [EncodedItems("image", self.model.config.image_token_id, [self.num_patches] * len(features), features)]
