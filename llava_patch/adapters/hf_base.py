"""Shared wiring for transformers VLMs that accept pre-encoded features (`mm_encoder_outputs`).

`forward` and `generate` are wrapped on the instance. When a call carries pixels, the subclass's
`encode` runs the vision side (shared encoder + selector, projector on kept tokens only, any merge)
and returns, per modality, the projected features of each item and how many placeholders the
processor wrote for it. Each item's placeholder run is resized to its feature count, and the original
method runs with the features as `mm_encoder_outputs`: the language model, its cache and decoding
are transformers' own, with ordinary contiguous positions. Calls without pixels pass through.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from ..patch import PatchConfig
from ..placeholders import resize_placeholders
from ..registry import find_encoder
from ..tower import VisionSelection, encode_and_select, llava_vision_geometry
from .base import Adapter, bind_call


@dataclass
class EncodedItems:
    """One modality's items (images or videos) of a call, in sequence order."""

    key: str  # the mm_encoder_outputs key: "image" or "video"
    placeholder_id: int
    placeholders: list[int]  # placeholders the processor wrote for each item
    features: list[torch.Tensor]  # (tokens, hidden) projected features of each item
    stacked: bool = False  # the model wants one (items, tokens, hidden) tensor instead of a list


@dataclass
class EncodedCall:
    """The vision side of one call: each modality's items, and the selection to report."""

    items: list[EncodedItems]
    selection: list
    scores: list


class HFAdapter(Adapter):
    pixel_arguments: tuple[str, ...] = ("pixel_values",)

    def __init__(self, model, towers: list) -> None:
        super().__init__(model)
        geometry = llava_vision_geometry(model.config)
        for tower in towers:
            find_encoder(tower)  # raises for towers of no supported family (e.g. without a [CLS] token)
        self.select_layer, self.side, self.num_patches = geometry.select_layer, geometry.side, geometry.num_patches
        self.patch: PatchConfig | None = None

    def encode(self, arguments: dict) -> EncodedCall:
        """Encode and select the pixels of one call."""
        raise NotImplementedError

    def select(self, tower, pixel_values) -> VisionSelection:
        """The shared vision path (`tower.encode_and_select`) with this patch's selector and budget."""
        patch = self.patch
        return encode_and_select(tower, pixel_values, patch.selector, patch.keep, self.select_layer,
                                 patch.stop_at_select_layer)

    def language_model(self):
        return self.model.model.language_model

    def install(self, config: PatchConfig) -> None:
        self.patch = config
        model, recorder = self.model, config.recorder
        original_forward, original_generate = model.forward, model.generate

        def has_pixels(arguments: dict) -> bool:
            return any(arguments.get(name) is not None for name in self.pixel_arguments)

        @functools.wraps(original_forward)
        def forward(*args, **kwargs):
            with recorder.call():
                arguments = bind_call(original_forward, args, kwargs)
                if not has_pixels(arguments):
                    return original_forward(*args, **kwargs)
                for name in ("inputs_embeds", "position_ids"):
                    if arguments.get(name) is not None:
                        raise ValueError(f"{name} cannot be combined with pixel inputs on a pruned model: pass input_ids")
                return original_forward(**self._prune(arguments))

        @functools.wraps(original_generate)
        def generate(*args, **kwargs):
            with recorder.call():
                arguments = bind_call(original_generate, args, kwargs)
                if not has_pixels(arguments):
                    return original_generate(*args, **kwargs)
                prompt = arguments.pop("inputs", None)
                prompt = arguments.get("input_ids") if prompt is None else prompt
                if prompt is None:
                    raise ValueError("generate() with pixel inputs on a pruned model needs input_ids")
                arguments["input_ids"] = prompt
                with torch.no_grad():  # as generate() itself
                    arguments = self._prune(arguments)
                output = original_generate(**arguments)
                return _restore_prompt(output, prompt=prompt, pruned_length=arguments["input_ids"].shape[1])

        model.forward = forward
        model.generate = generate

    def uninstall(self) -> None:
        del self.model.forward
        del self.model.generate
        self.patch = None

    def _prune(self, arguments: dict) -> dict:
        config = self.model.config
        for name in ("vision_feature_layer", "vision_feature_select_strategy"):
            if arguments.pop(name, None) not in (None, getattr(config, name)):
                raise ValueError(f"{name} differs from the model config the patch was applied with; "
                                 "change the config and apply again")
        encoded = self.encode(arguments)
        for name in self.pixel_arguments:  # generate() refuses pixels beside encoder outputs
            arguments.pop(name, None)
        input_ids, attention_mask, labels = arguments["input_ids"], arguments.get("attention_mask"), arguments.get("labels")
        visual_tokens = [0] * input_ids.shape[0]
        for items in encoded.items:
            resized = resize_placeholders(
                input_ids, attention_mask, items.placeholder_id, items.placeholders,
                [feature.shape[0] for feature in items.features], self._pad_token_id(), labels,
            )
            input_ids, attention_mask, labels = resized.input_ids, resized.attention_mask, resized.labels
            visual_tokens = [a + b for a, b in zip(visual_tokens, resized.placeholder_tokens)]
        self.patch.recorder.record(encoded.selection, encoded.scores, visual_tokens)
        if self.patch.visual_positions is not None:
            placeholders = torch.tensor([items.placeholder_id for items in encoded.items], device=input_ids.device)
            self.patch.visual_positions(torch.isin(input_ids, placeholders) & attention_mask.bool())
        arguments.update(input_ids=input_ids, attention_mask=attention_mask, mm_encoder_outputs={
            items.key: BaseModelOutputWithPooling(
                pooler_output=torch.stack(items.features) if items.stacked else items.features)
            for items in encoded.items
        })
        if labels is not None:
            arguments["labels"] = labels
        return arguments

    def _pad_token_id(self) -> int:
        """A token id for re-padding rows (masked out, so any id but a placeholder works)."""
        placeholders = {getattr(self.model.config, name, None) for name in ("image_token_id", "video_token_id")}
        candidates = [
            self.model.generation_config.pad_token_id,
            self.model.config.text_config.pad_token_id,
            self.model.generation_config.eos_token_id,
        ]
        for candidate in candidates:
            if isinstance(candidate, (list, tuple)):
                candidate = candidate[0] if candidate else None
            if candidate is not None and candidate not in placeholders:
                return int(candidate)
        return next(i for i in range(3) if i not in placeholders)


def _restore_prompt(output, prompt: torch.Tensor, pruned_length: int):
    """Put the caller's own prompt (full placeholders) back in front of the generated tokens, so
    `output[:, prompt.shape[1]:]` is the answer exactly as with the unpatched model."""
    sequences = output.sequences if isinstance(output, ModelOutput) else output
    prompt = prompt.to(sequences.device).repeat_interleave(sequences.shape[0] // prompt.shape[0], dim=0)
    restored = torch.cat([prompt, sequences[:, pruned_length:]], dim=1)
    if isinstance(output, ModelOutput):
        output.sequences = restored
        return output
    return restored
