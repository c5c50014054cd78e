"""An lmms-eval plugin: our pruned LLaVA models as lmms-eval models, registered through lmms-eval's
entry-point group `lmms_eval.models` (see pyproject.toml), so that

    lmms-eval --model llava_patch_hf --model_args pretrained=llava-hf/llava-1.5-7b-hf,method=fastervlm,reduction_ratio=0.95 --tasks pope

runs with nothing edited. Two model ids: `llava_patch_hf` (transformers checkpoints, backend "hf") and
`llava_patch` (the original LLaVA codebase, backend "llava"); `llava_patch_hf` also has a chat variant
(lmms-eval's default for chat tasks; `--force_simple` picks the simple one).

The models answer with our `VLM` protocol (vicuna_v1 prompt around the task's text, `pad` image
preprocessing, greedy decoding, left-padded batches), not lmms-eval's own LLaVA prompting. Every batch
checks that the visual tokens that reached the LLM equal what the budget fixes; a mismatch raises (an
answer is never scored empty). The measured counts go into lmms-eval's results (`throughput`:
`avg_visual_tokens_per_sample`), into its log, and, cumulatively after every `generate_until` call,
into `visual_tokens_<model id>.json` in the folder given by `--output_path` (or by the `tokens_file`
model argument, a file path).

The entry point (`llava_patch.eval.lmms_eval_models`) names these classes by path without importing
this module: lmms-eval drops every entry-point model when one entry point fails to import.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
from lmms_eval.api.model import lmms
from lmms_eval.models.model_utils.gen_metrics import log_metrics
from loguru import logger

from .. import apply
from ..models.loading import load_model
from . import HF_MODEL_ID, LLAVA_MODEL_ID
from .command import parse_options
from .runner import budget_arguments, check_visual_tokens


def parse_model_args(text: str) -> dict:
    """`key=value,key=value` with each value parsed as JSON where it parses (else kept as a string);
    commas inside quotes, brackets or braces do not split."""
    parts, depth, quote, current = [], 0, None, []
    for char in text.strip():
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    pairs = ["=".join(s.strip() for s in part.split("=", 1)) for part in parts if part.strip()]
    return parse_options(pairs, flag="--model_args")


def _output_dir_from_command_line() -> Path | None:
    """The folder of lmms-eval's `--output_path` (a `.json` path stands for its folder), if given."""
    argv = sys.argv[1:]
    for index, arg in enumerate(argv):
        value = None
        if arg == "--output_path" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--output_path="):
            value = arg.split("=", 1)[1]
        if value:
            path = Path(value)
            return path.parent if path.suffix == ".json" else path
    return None


def token_summary(counts: list[int]) -> dict | None:
    return {"min": min(counts), "mean": statistics.fmean(counts), "max": max(counts)} if counts else None


class _LlavaPatchModel(lmms):
    """One pruned LLaVA model answering lmms-eval's `generate_until` requests."""

    backend = "llava"
    model_id = LLAVA_MODEL_ID
    is_simple = True

    def __init__(self, pretrained: str, method: str = "none", keep: int | None = None,
                 reduction_ratio: float | None = None, batch_size: int | str = 1, device: str | None = None,
                 dtype: str | None = None, max_batch_size=None, tokens_file: str | None = None,
                 **options) -> None:
        super().__init__()
        batch_size = int(batch_size) if isinstance(batch_size, str) and batch_size.isdigit() else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: must be a positive integer")
        budget = budget_arguments(method, keep, reduction_ratio)
        torch_dtype = None
        if dtype is not None:
            torch_dtype = getattr(torch, str(dtype), None)
            if not isinstance(torch_dtype, torch.dtype):
                raise ValueError(f"dtype={dtype!r}: use float16, bfloat16 or float32")
        self.batch_size_per_gpu = batch_size
        self.settings = {"pretrained": str(pretrained), "backend": self.backend, "method": method,
                         "keep": keep, "reduction_ratio": reduction_ratio, "options": options,
                         "batch_size": batch_size, "dtype": dtype}
        self.vlm = load_model(pretrained, backend=self.backend, dtype=torch_dtype, device=device)
        self.handle = apply(self.vlm.model, method, **budget, **options)
        self.expected = self.handle.expected_visual_tokens()
        self.visual_tokens: list[int] = []
        self.tokens_path = Path(tokens_file) if tokens_file else None
        if self.tokens_path is None:
            folder = _output_dir_from_command_line()
            self.tokens_path = folder / f"visual_tokens_{self.model_id}.json" if folder else None
        logger.info(f"{self.model_id}: {pretrained} ({self.backend}) patched with {method} {budget or ''}; "
                    f"expected visual tokens per sample: {self.expected}")

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        args = parse_model_args(arg_string or "")
        for key, value in (additional_config or {}).items():
            if value is not None and key not in args:  # --model_args wins over lmms-eval's CLI defaults
                args[key] = value
        return cls(**args)

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self):
        return self.vlm.model.device

    def loglikelihood(self, requests):
        raise NotImplementedError(f"{self.model_id} answers generate_until tasks only (our VLM protocol decodes "
                                  "greedily); loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError(f"{self.model_id}: multi-round generation is not supported")

    def _question(self, request) -> tuple[str, list, dict]:
        """(text, visuals, generation settings) of a simple-model request:
        (context, gen_kwargs, doc_to_visual, doc_id, task, split)."""
        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args[:6]
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual is not None else None
        return context, list(visuals or []), gen_kwargs or {}

    def _image(self, visuals: list, request):
        """The question's one image as RGB, or None."""
        visuals = [v for v in visuals if v is not None]
        task, doc_id = request.args[4], request.args[3]
        if any(not hasattr(v, "convert") for v in visuals):
            raise NotImplementedError(f"{self.model_id}: only image tasks (PIL images) are supported; "
                                      f"got {type(visuals[0]).__name__} from task {task}")
        if len(visuals) > 1:
            raise NotImplementedError(f"{self.model_id}: one image per question (LLaVA's protocol); "
                                      f"task {task} doc {doc_id} has {len(visuals)}")
        return visuals[0].convert("RGB") if visuals else None

    def generate_until(self, requests) -> list[str]:
        answers: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, object, str, object]]] = {}
        for index, request in enumerate(requests):
            text, visuals, gen_kwargs = self._question(request)
            image = self._image(visuals, request)
            key = (json.dumps(gen_kwargs, sort_keys=True, default=str), image is not None)
            groups.setdefault(key, []).append((index, request, text, image))
        for (settings, with_image), members in groups.items():
            gen_kwargs = json.loads(settings)
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new_tokens = int(gen_kwargs.get("max_new_tokens", 128))
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size]
                images = [image for *_, image in batch] if with_image else None
                texts = [text for _, _, text, _ in batch]
                start_time = time.perf_counter()
                outputs = self.vlm.generate(images, texts, max_new_tokens=max_new_tokens)
                seconds = time.perf_counter() - start_time
                visual = self._check_tokens(batch) if with_image else [0] * len(batch)
                # Into lmms-eval's results file ("throughput": avg_visual_tokens_per_sample is the mean over batches).
                log_metrics(seconds, self.vlm.last_new_tokens, self.vlm.last_new_tokens / seconds if seconds else 0.0,
                            {"visual_tokens_per_sample": statistics.fmean(visual)})
                for (index, *_), text in zip(batch, outputs):
                    answers[index] = self._truncate(text, until)
        self._report()
        return answers

    @staticmethod
    def _truncate(text: str, until: list[str]) -> str:
        for stop in until:
            if stop:
                text = text.split(stop, 1)[0]
        return text

    def _check_tokens(self, batch) -> list[int]:
        visual = [int(v) for v in self.handle.last_visual_tokens or []]
        docs = [(request.args[4], request.args[3]) for _, request, *_ in batch]
        check_visual_tokens(visual, len(batch), self.expected, self.settings["method"], f"{self.model_id}: docs {docs}")
        self.visual_tokens.extend(visual)
        return visual

    def _report(self) -> None:
        summary = token_summary(self.visual_tokens)
        if summary is None:
            return
        logger.info(f"{self.model_id}: visual tokens that reached the LLM over {len(self.visual_tokens)} samples: "
                    f"min {summary['min']}, mean {summary['mean']:.2f}, max {summary['max']} "
                    f"(expected {self.expected})")
        if self.tokens_path is not None and self.rank == 0:
            record = {"model": self.model_id, "interface": "simple" if self.is_simple else "chat", **self.settings,
                      "expected_visual_tokens": self.expected,
                      "samples": len(self.visual_tokens), "measured_visual_tokens": summary,
                      "per_sample": self.visual_tokens}
            self.tokens_path.parent.mkdir(parents=True, exist_ok=True)
            self.tokens_path.write_text(json.dumps(record, indent=2, default=str) + "\n")

class LlavaPatchHF(_LlavaPatchModel):
    """`llava_patch_hf`: a transformers checkpoint (e.g. llava-hf/llava-1.5-7b-hf) with a pruning method."""

    backend = "hf"
    model_id = HF_MODEL_ID

class LlavaPatchHFChat(LlavaPatchHF):
    """`llava_patch_hf` for chat tasks (lmms-eval's default when a model has both): the task's messages
    give the question (their text parts, in order) and its image; the answer follows our VLM protocol."""

    is_simple = False

    def _question(self, request) -> tuple[str, list, dict]:
        """(context, doc_to_messages, gen_kwargs, doc_id, task, split) → the messages' text and images."""
        from lmms_eval.protocol import ChatMessages

        _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args[:6]
        messages = ChatMessages(messages=doc_to_messages(self.task_dict[task][split][doc_id]))
        images, videos, audios = messages.extract_media()
        if videos or audios:
            raise NotImplementedError(f"{self.model_id}: image tasks only; task {task} doc {doc_id} has video or audio")
        texts = [content.text for message in messages.messages for content in message.content if content.type == "text"]
        return "\n".join(texts), images, gen_kwargs or {}


class LlavaPatchLlava(_LlavaPatchModel):
    """`llava_patch`: an original-LLaVA checkpoint (e.g. liuhaotian/llava-v1.5-7b) with a pruning method."""

    backend = "llava"
    model_id = LLAVA_MODEL_ID

