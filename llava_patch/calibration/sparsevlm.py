"""SparseVLM settings calibrated to a layer-averaged token count: the `scale` that meets a target.

SparseVLM (`llava_patch.methods.sparsevlm`) keeps, at each pruning layer, min(int(rank·scale + bias), V − 1)
visual tokens, so its count depends on the sample; its authors publish (scale, bias) only for 192/128/64
layer-averaged tokens on LLaVA-1.5-7B. FasterVLM's tables print SparseVLM rows at other counts (432/288/
144/58 on LLaVA-1.5-7B/13B, 2160/1440/720/290 on LLaVA-NeXT-7B) without their settings. This module
finds them: with `bias` fixed (default 0), the `scale` at which the mean over calibration questions of
the layer-averaged visual-token count (`handle.last_equivalent_visual_tokens`: the mean over decoder
layers of the visual tokens left after each layer's pruning, the count SparseVLM's code prints) equals
the target `keep`.

Each trial runs the real method (`llava_patch.apply(model, "sparsevlm", keep=keep, scale=s, bias=b)`)
on the real model, prompt and preprocessing (`VLM.prepare`, the evaluation's vicuna_v1 prompt with
"<image>\\n" before the question), one prefill forward per batch of questions (a padded batch prunes
each row as it would alone). The count is taken as non-decreasing in `scale`: the search brackets the
target (scale 0, then 1, 2, 4, … up to the visual-token count, where every pruning layer keeps V − 1)
and bisects until the mean is within `tolerance` (relative, default 0.5 %) of the target or the bracket
is narrower than `resolution` (1e-3); the settings are the trial closest to the target, and every trial
is recorded.

File format: `llava_patch.sparsevlm_settings`.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..fitted_files import write_new
from ..sparsevlm_settings import FORMAT, FORMAT_VERSION

DEFAULT_TOLERANCE = 0.005  # relative to the target
DEFAULT_RESOLUTION = 1e-3  # the narrowest scale bracket bisected
DEFAULT_BATCH_SIZE = 8
RESERVED_OPTIONS = ("scale", "bias", "settings", "keep", "reduction_ratio")
PROMPT = "vicuna_v1 (= LLaVA's llava_v1), '<image>\\n' before the text (the evaluation prompt)"


# --------------------------------------------------------------------------------------------------
# One trial: the method at a given (scale, bias) over the calibration questions
@dataclass
class Measurement:
    """Per question (calibration order): the layer-averaged count, the final count, the visual tokens."""

    layer_mean: list[float]
    final: list[int]
    visual_tokens: list[int]

    @property
    def mean(self) -> float:
        return sum(self.layer_mean) / len(self.layer_mean)

    @property
    def mean_final(self) -> float:
        return sum(self.final) / len(self.final)


def _to_device(value, device):
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_to_device(item, device) for item in value]
    return value


class SparseVLMCounter:
    """Runs SparseVLM at a trial (scale, bias) over the calibration questions (prefill only) and returns
    what the method recorded. Inputs are prepared once, while the model is patched (LLaVA-NeXT's
    paper mode changes the preprocessing), and kept on the CPU."""

    def __init__(self, vlm, questions: Sequence[dict], image_folder: str | Path, keep: int,
                 options: dict | None = None, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: at least 1")
        self.vlm, self.questions, self.keep = vlm, list(questions), keep
        self.image_folder, self.options = Path(image_folder), dict(options or {})
        self.batch_size, self.progress = batch_size, progress
        self._batches: list[dict] | None = None
        self.pruning_layers: list[int] | None = None
        self.num_layers: int | None = None

    def _prepare(self, batch: Sequence[dict]) -> dict:
        from PIL import Image

        images = []
        for question in batch:
            path = self.image_folder / question["image"]
            if not path.is_file():
                raise FileNotFoundError(f"{path}: image of question {question['question_id']!r} not found")
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        inputs = self.vlm.prepare(images, [question["text"] for question in batch])
        return {name: _to_device(value, "cpu") for name, value in inputs.items()}

    def __call__(self, scale: float, bias: float) -> Measurement:
        import torch
        from tqdm.auto import tqdm

        import llava_patch

        handle = llava_patch.apply(self.vlm.model, "sparsevlm", keep=self.keep, scale=scale, bias=bias, **self.options)
        layer_mean, final, visual = [], [], []
        try:
            self.num_layers = len(handle.adapter.language_model().layers)
            self.pruning_layers = handle.method_object.pruning_layers(self.num_layers)
            starts = range(0, len(self.questions), self.batch_size)
            if self._batches is None:
                self._batches = [None] * len(starts)
            device = self.vlm.model.device
            for number, start in enumerate(tqdm(starts, desc=f"scale={scale:.4f}", leave=False, disable=not self.progress)):
                batch = self.questions[start : start + self.batch_size]
                if self._batches[number] is None:
                    self._batches[number] = self._prepare(batch)
                inputs = {name: _to_device(value, device) for name, value in self._batches[number].items()}
                with torch.inference_mode():
                    self.vlm.forward({**inputs, "use_cache": False})
                equivalent, layers = handle.last_equivalent_visual_tokens, handle.last_layer_visual_tokens
                if not equivalent or len(equivalent) != len(batch) or not layers or len(layers) != len(batch):
                    ids = [question["question_id"] for question in batch]
                    raise RuntimeError(f"questions {ids}: SparseVLM recorded no layer-averaged count (did the "
                                       "prompt carry the image into the language model?)")
                layer_mean += [float(value) for value in equivalent]
                final += [int(value) for value in handle.last_visual_tokens]
                visual += [int(counts[0]) for counts in layers]
        finally:
            handle.remove()
        return Measurement(layer_mean, final, visual)


# --------------------------------------------------------------------------------------------------
# The search
@dataclass
class Trial:
    scale: float
    measurement: Measurement

    def record(self) -> dict:
        return {"scale": self.scale, "mean_layer_visual_tokens": self.measurement.mean,
                "mean_final_visual_tokens": self.measurement.mean_final}


@dataclass
class SearchResult:
    scale: float
    bias: float
    measurement: Measurement
    reached: bool
    trials: list[Trial]


def search_scale(measure: Callable[[float, float], Measurement], keep: int, bias: float = 0.0,
                 tolerance: float = DEFAULT_TOLERANCE, resolution: float = DEFAULT_RESOLUTION,
                 max_scale: float | None = None, progress: bool = True) -> SearchResult:
    """The scale (bias fixed) at which `measure(scale, bias).mean` meets `keep` within `tolerance`
    (relative): bracket from scale 0 by doubling from 1 (up to `max_scale`, default: the visual-token
    count + |bias| + 1, where every pruning layer keeps V − 1), then bisect until within tolerance or the
    bracket is below `resolution`. The result is the trial closest to the target."""
    from tqdm.auto import tqdm

    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep={keep!r}: a positive number of tokens")
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance={tolerance!r}: a fraction of the target in (0, 1)")
    if not resolution > 0:
        raise ValueError(f"resolution={resolution!r}: a positive scale step")
    if not math.isfinite(bias):
        raise ValueError(f"bias={bias!r}: a finite number")
    trials: list[Trial] = []
    bar = tqdm(desc=f"SparseVLM calibration (keep={keep}, bias={bias:g})", unit="trial", disable=not progress)

    def trial(scale: float) -> float:
        measurement = measure(scale, bias)
        trials.append(Trial(scale, measurement))
        bar.update(1)
        bar.set_postfix(scale=f"{scale:.4f}", mean=f"{measurement.mean:.2f}")
        return measurement.mean

    def within(mean: float) -> bool:
        return abs(mean - keep) <= tolerance * keep

    try:
        low = 0.0
        mean = trial(low)
        if not within(mean):
            if mean > keep:
                floor = ("a lower bias may keep fewer" if bias > 0 else
                         "that is SparseVLM's floor on this model: the layers before its first pruning layer see "
                         "every visual token and its recycled cluster tokens remain, so no setting keeps fewer")
                raise ValueError(f"keep={keep}: at scale 0 with bias {bias:g} SparseVLM already keeps {mean:.2f} "
                                 f"visual tokens per layer on average; {floor}")
            ceiling = max_scale if max_scale is not None else max(trials[0].measurement.visual_tokens) + abs(bias) + 1
            high = min(1.0, ceiling)
            while True:
                mean = trial(high)
                if within(mean) or mean > keep:
                    break
                if high >= ceiling:
                    raise ValueError(f"keep={keep}: at scale {high:g} (bias {bias:g}) SparseVLM keeps only {mean:.2f} "
                                     "visual tokens per layer on average, the most it can keep on these questions")
                low, high = high, min(2 * high, ceiling)
            while not within(mean) and high - low >= resolution:
                middle = (low + high) / 2
                mean = trial(middle)
                if mean < keep:
                    low = middle
                else:
                    high = middle
    finally:
        bar.close()
    best = min(trials, key=lambda t: (abs(t.measurement.mean - keep), t.scale))
    return SearchResult(best.scale, bias, best.measurement, within(best.measurement.mean), trials)


# --------------------------------------------------------------------------------------------------
# The command
def calibrate(model: str, data: str | Path, image_folder: str | Path, keep: int, output: str | Path,
              backend: str = "hf", bias: float = 0.0, limit: int | None = None, device: str | None = None,
              batch_size: int = DEFAULT_BATCH_SIZE, tolerance: float = DEFAULT_TOLERANCE,
              resolution: float = DEFAULT_RESOLUTION, options: dict | None = None, progress: bool = True,
              command: str | None = None) -> dict:
    """Calibrate SparseVLM's scale for `keep` layer-averaged tokens on a checkpoint and calibration
    questions; write the settings (with the data they came from) to `output`, a new file. Returns them."""
    from datetime import datetime, timezone

    from ..eval.provenance import device_name, git_commit, paper_model, sha256, versions, weights_fingerprint
    from ..models.loading import load_model
    from .fitprune import read_questions

    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output}: already exists; the settings are not overwritten (choose a new --output)")
    options = dict(options or {})
    reserved = sorted(set(options) & set(RESERVED_OPTIONS))
    if reserved:
        raise ValueError(f"option {reserved[0]!r} is set by the calibration itself; pass only other apply options "
                         "(e.g. mode=paper, layers=[...])")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"--keep {keep!r}: a positive number of layer-averaged visual tokens")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: at least 1")
    questions = read_questions(data, limit)
    vlm = load_model(model, backend=backend, device=device)
    counter = SparseVLMCounter(vlm, questions, image_folder, keep, options, batch_size, progress)
    result = search_scale(counter, keep, bias, tolerance, resolution, progress=progress)
    measurement = result.measurement
    parameter = next(vlm.model.parameters())
    visual_tokens = sorted(set(measurement.visual_tokens))
    settings = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "method": "sparsevlm",
        "keep": keep, "scale": result.scale, "bias": result.bias,
        "reached": result.reached, "tolerance": tolerance, "resolution": resolution,
        "mean_layer_visual_tokens": measurement.mean,
        "per_sample_layer_visual_tokens": measurement.layer_mean,
        "mean_final_visual_tokens": measurement.mean_final,
        "per_sample_final_visual_tokens": measurement.final,
        "pruning_layers": counter.pruning_layers,
        "options": options,
        "model": {"name": paper_model(model), "source": str(model), "backend": backend, "layers": counter.num_layers,
                  "visual_tokens": visual_tokens[0] if len(visual_tokens) == 1 else visual_tokens,
                  "fingerprint": weights_fingerprint(model), "dtype": str(parameter.dtype).replace("torch.", "")},
        "calibration": {"file": str(data), "sha256": sha256(data),
                        "samples": len(questions), "question_ids": [q["question_id"] for q in questions],
                        "image_folder": str(image_folder), "limit": limit, "batch_size": batch_size, "prompt": PROMPT},
        "trials": [trial.record() for trial in result.trials],
        "versions": {**versions(), "llava_patch_commit": git_commit()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name() if str(parameter.device).startswith("cuda") else "cpu",
        "command": command or _command(model, backend, data, image_folder, keep, output, bias, limit, device,
                                       batch_size, tolerance, options),
    }
    save_settings(settings, output)
    return settings


def save_settings(settings: dict, path: str | Path) -> Path:
    """Write settings to a new file (an existing one is never overwritten)."""
    return write_new(path, settings, "the settings are")


def _command(model, backend, data, image_folder, keep, output, bias, limit, device, batch_size, tolerance, options) -> str:
    """The `llava-patch sparsevlm-calibrate` command line that makes these settings."""
    words = ["llava-patch", "sparsevlm-calibrate", "--model", str(model), "--backend", backend, "--data", str(data),
             "--image-folder", str(image_folder), "--keep", str(keep), "--output", str(output)]
    for option, value in (("--limit", limit), ("--device", device)):
        if value is not None:
            words += [option, str(value)]
    if bias != 0:
        words += ["--bias", f"{bias:g}"]
    if batch_size != DEFAULT_BATCH_SIZE:
        words += ["--batch-size", str(batch_size)]
    if tolerance != DEFAULT_TOLERANCE:
        words += ["--tolerance", f"{tolerance:g}"]
    for name, value in options.items():
        words += ["--option", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]
    return shlex.join(words)
