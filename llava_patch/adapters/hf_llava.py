"""LLaVA-1.5 on Hugging Face transformers (`LlavaForConditionalGeneration`): one 336-px image → its
`keep` patch tokens, projected after selection."""

from __future__ import annotations

from torch import nn
from transformers import LlavaForConditionalGeneration

from ..registry import register_adapter
from ..tower import project
from .hf_base import EncodedCall, EncodedItems, HFAdapter


@register_adapter
class HFLlavaAdapter(HFAdapter):
    model_description = "transformers LlavaForConditionalGeneration (LLaVA-1.5) with a CLIP vision tower"
    accepts_variable_counts = True

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        return isinstance(model, LlavaForConditionalGeneration)

    def __init__(self, model: LlavaForConditionalGeneration) -> None:
        super().__init__(model, towers=[model.model.vision_tower])

    def encode(self, arguments: dict) -> EncodedCall:
        selection = self.select(self.model.model.vision_tower, arguments["pixel_values"])
        features = project(self.model.model.multi_modal_projector, selection.features)
        items = EncodedItems("image", self.model.config.image_token_id, [self.num_patches] * len(features), features)
        return EncodedCall([items], list(selection.kept), list(selection.scores))
