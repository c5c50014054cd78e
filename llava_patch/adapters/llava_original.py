"""LLaVA-1.5 on the original LLaVA codebase (`llava` package, haotian-liu/LLaVA v1.2.2.post1).

The original model splices whatever `encode_images` returns into the sequence in place of each
single `IMAGE_TOKEN_INDEX` (−200), with contiguous positions. So pruning there is one wrapped method:
`encode_images` runs the same shared encoder/selector as the transformers backend and projects only
the kept patches. `prepare_inputs_labels_for_multimodal` is wrapped only to measure how many visual
tokens each sample actually carried into the language model.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..registry import register_adapter
from ..vision import encode_and_select
from .base import Adapter, bind_call, select_layer_index

IMAGE_TOKEN_INDEX = -200  # llava.constants.IMAGE_TOKEN_INDEX


def _llava_model_class():
    try:
        from llava.model.language_model.llava_llama import LlavaLlamaForCausalLM
    except ImportError:
        return None
    return LlavaLlamaForCausalLM


@register_adapter
class OriginalLlavaAdapter(Adapter):
    model_description = "original LLaVA codebase LlavaLlamaForCausalLM (llava-torch==1.2.2.post1; LLaVA-1.5)"

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        model_class = _llava_model_class()
        return model_class is not None and isinstance(model, model_class)

    def __init__(self, model) -> None:
        super().__init__(model)
        config = model.config
        merge = getattr(config, "mm_patch_merge_type", "flat")
        aspect = getattr(config, "image_aspect_ratio", "square")
        if merge != "flat" or aspect == "anyres":
            raise ValueError(
                f"mm_patch_merge_type={merge!r}, image_aspect_ratio={aspect!r}: this adapter handles LLaVA-1.5 "
                "(one 336-px crop per image, flat merge); multi-crop LLaVA v1.6 is not supported yet"
            )
        self.vision_tower = model.get_vision_tower()
        if self.vision_tower is None or not getattr(self.vision_tower, "is_loaded", False):
            raise ValueError("the model's vision tower is not loaded; load the checkpoint with load_pretrained_model first")
        if self.vision_tower.select_feature != "patch":
            raise ValueError(f"mm_vision_select_feature={self.vision_tower.select_feature!r}: pruning needs 'patch'")
        clip = self.vision_tower.vision_tower
        self.select_layer = select_layer_index(self.vision_tower.select_layer, clip.config.num_hidden_layers)
        self.num_patches = self.vision_tower.num_patches
        self.handle = None

    def install(self, handle) -> None:
        self.handle = handle
        model = self.model
        original_prepare = model.prepare_inputs_labels_for_multimodal

        def encode_images(images: torch.Tensor) -> torch.Tensor:
            tower = self.vision_tower
            selection = encode_and_select(
                tower.vision_tower,
                images.to(device=tower.device, dtype=tower.dtype),
                handle.selector,
                handle.keep,
                self.select_layer,
                handle.stop_at_select_layer,
            )
            handle.record(list(selection.kept), list(selection.scores))
            return model.get_model().mm_projector(selection.features.to(images.dtype))

        @functools.wraps(original_prepare)
        def prepare_inputs_labels_for_multimodal(*args, **kwargs):
            arguments = bind_call(original_prepare, args, kwargs)
            outputs = original_prepare(*args, **kwargs)
            input_ids = arguments["input_ids"]
            if arguments.get("images") is not None and input_ids.shape[1] > 1:
                handle.last_visual_tokens = _visual_tokens(input_ids, arguments.get("attention_mask"), outputs)
            return outputs

        model.encode_images = encode_images
        model.prepare_inputs_labels_for_multimodal = prepare_inputs_labels_for_multimodal

    def uninstall(self) -> None:
        del self.model.encode_images
        del self.model.prepare_inputs_labels_for_multimodal
        self.handle = None


def _visual_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, outputs: tuple) -> list[int]:
    """Per row: sequence length the LLM received minus the row's text tokens."""
    new_attention_mask, new_embeds = outputs[2], outputs[4]
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    text = (mask & (input_ids != IMAGE_TOKEN_INDEX)).sum(dim=1)
    received = (
        new_attention_mask.bool().sum(dim=1)
        if new_attention_mask is not None
        else torch.full_like(text, new_embeds.shape[1])
    )
    return (received - text).tolist()
