"""LLaVA-1.5 on Hugging Face transformers (`LlavaForConditionalGeneration`).

`forward` and `generate` are wrapped on the instance. When a call carries `pixel_values`, the images
are encoded here (tower up to the select layer, [CLS] row recorded beside sdpa), the selector keeps
`keep` patches per image, the projector runs on those only, and the prompt's placeholders shrink
to match. The original method then runs with the features passed as `mm_encoder_outputs`, so the
language model, its cache and decoding are transformers' own. Calls without images pass through.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from transformers import LlavaForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from ..placeholders import ShrunkInputs, shrink_placeholders
from ..registry import register_adapter
from ..vision import clip_encoder, encode_and_select
from .base import Adapter, bind_call, select_layer_index


@register_adapter
class HFLlavaAdapter(Adapter):
    model_description = "transformers LlavaForConditionalGeneration (LLaVA-1.5) with a CLIP vision tower"

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
        self.image_token_id = config.image_token_id
        self.handle = None

    def install(self, handle) -> None:
        self.handle = handle
        model = self.model
        original_forward, original_generate = model.forward, model.generate

        @functools.wraps(original_forward)
        def forward(*args, **kwargs):
            arguments = bind_call(original_forward, args, kwargs)
            if arguments.get("pixel_values") is None:
                return original_forward(*args, **kwargs)
            for name in ("inputs_embeds", "position_ids"):
                if arguments.get(name) is not None:
                    raise ValueError(f"{name} cannot be combined with pixel_values on a pruned model: pass input_ids")
            shrunk, encoded = self._prune(arguments)
            arguments.update(
                input_ids=shrunk.input_ids,
                attention_mask=shrunk.attention_mask,
                pixel_values=None,
                mm_encoder_outputs=encoded,
            )
            if shrunk.labels is not None:
                arguments["labels"] = shrunk.labels
            return original_forward(**arguments)

        @functools.wraps(original_generate)
        def generate(*args, **kwargs):
            arguments = bind_call(original_generate, args, kwargs)
            if arguments.get("pixel_values") is None:
                return original_generate(*args, **kwargs)
            input_ids = arguments.pop("inputs", None)
            if input_ids is None:
                input_ids = arguments.get("input_ids")
            if input_ids is None:
                raise ValueError("generate() with pixel_values on a pruned model needs input_ids")
            arguments["input_ids"] = input_ids
            with torch.no_grad():  # as generate() itself
                shrunk, encoded = self._prune(arguments)
            del arguments["pixel_values"]  # generate() refuses pixels beside encoder outputs
            arguments.update(input_ids=shrunk.input_ids, attention_mask=shrunk.attention_mask, mm_encoder_outputs=encoded)
            output = original_generate(**arguments)
            return _restore_prompt(output, prompt=input_ids, shrunk_length=shrunk.input_ids.shape[1])

        model.forward = forward
        model.generate = generate

    def uninstall(self) -> None:
        del self.model.forward
        del self.model.generate
        self.handle = None

    def _prune(self, arguments: dict) -> tuple[ShrunkInputs, dict[str, BaseModelOutputWithPooling]]:
        """Encode and select the images of one call; shrink its token inputs to the kept counts."""
        config = self.model.config
        layer = arguments.pop("vision_feature_layer", None)
        strategy = arguments.pop("vision_feature_select_strategy", None)
        if layer not in (None, config.vision_feature_layer) or strategy not in (None, config.vision_feature_select_strategy):
            raise ValueError(
                "vision_feature_layer / vision_feature_select_strategy differ from the model config the "
                "patch was applied with; change the config and apply again"
            )
        handle = self.handle
        selection = encode_and_select(
            self.tower,
            arguments["pixel_values"],
            handle.selector,
            handle.keep,
            self.select_layer,
            handle.stop_at_select_layer,
        )
        features = self.model.model.multi_modal_projector(selection.features)
        shrunk = shrink_placeholders(
            arguments["input_ids"],
            arguments.get("attention_mask"),
            image_token_id=self.image_token_id,
            tokens_per_image=self.num_patches,
            keep_per_image=[handle.keep] * features.shape[0],
            pad_token_id=self._pad_token_id(),
            labels=arguments.get("labels"),
        )
        handle.record_selection(selection.kept, selection.scores)
        handle.last_visual_tokens = shrunk.visual_tokens
        return shrunk, {"image": BaseModelOutputWithPooling(pooler_output=list(features))}

    def _pad_token_id(self) -> int:
        """A token id for re-padding rows (masked out, so any id but the image placeholder works)."""
        candidates = [
            self.model.generation_config.pad_token_id,
            self.model.config.text_config.pad_token_id,
            self.model.generation_config.eos_token_id,
        ]
        for candidate in candidates:
            if isinstance(candidate, (list, tuple)):
                candidate = candidate[0] if candidate else None
            if candidate is not None and candidate != self.image_token_id:
                return int(candidate)
        return 0 if self.image_token_id != 0 else 1


def _restore_prompt(output, prompt: torch.Tensor, shrunk_length: int):
    """Put the caller's own prompt (full placeholders) back in front of the generated tokens, so
    `output[:, prompt.shape[1]:]` is the answer exactly as with the unpatched model."""
    sequences = output.sequences if isinstance(output, ModelOutput) else output
    prompt = prompt.to(sequences.device).repeat_interleave(sequences.shape[0] // prompt.shape[0], dim=0)
    restored = torch.cat([prompt, sequences[:, shrunk_length:]], dim=1)
    if isinstance(output, ModelOutput):
        output.sequences = restored
        return output
    return restored
