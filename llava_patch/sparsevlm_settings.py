"""SparseVLM settings files: a (scale, bias) calibrated to a layer-averaged visual-token count.

Written by `llava-patch sparsevlm-calibrate` (`llava_patch.calibration.sparsevlm`) and read by the
method's `settings=` option (`llava_patch.methods.sparsevlm`); this module imports nothing else of the
package, so the method can read it.

File format (`FORMAT`, version 1), one JSON object:

    format, format_version     "llava_patch.sparsevlm_settings", 1
    method                     "sparsevlm"
    keep                       the target layer-averaged visual-token count (the budget the file is for)
    scale, bias                the settings (pass the file as `settings=`; `keep` must equal the target)
    reached                    whether the achieved mean is within `tolerance` of `keep`
    tolerance, resolution      the search's stopping rules (relative tolerance; smallest scale bracket)
    mean_layer_visual_tokens   the achieved mean over the calibration questions of the layer-averaged count
    per_sample_layer_visual_tokens   each question's layer-averaged count (calibration order)
    mean_final_visual_tokens, per_sample_final_visual_tokens   the count left after the last pruning layer
    pruning_layers             the decoder layers SparseVLM pruned after, on this model
    options                    further `apply` options used (e.g. LLaVA-NeXT's mode, SparseVLM's layers)
    model                      {name, source, backend, layers, visual_tokens, fingerprint, dtype}
    calibration                {file, sha256, samples, question_ids, image_folder, limit,
                                batch_size, prompt}
    trials                     [{scale, mean_layer_visual_tokens, mean_final_visual_tokens}] in search order
    versions, date, device, command   provenance
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fitted_files import check_format, read_fitted

FORMAT = "llava_patch.sparsevlm_settings"
FORMAT_VERSION = 1


class SettingsError(ValueError):
    """A SparseVLM settings file that cannot be used; the message names the file and the field."""


@dataclass
class SparseVLMSettings:
    """A calibrated (scale, bias) for SparseVLM at a target layer-averaged count `keep`."""

    keep: int
    scale: float
    bias: float
    options: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # the whole file
    path: str | None = None

    @property
    def layers_option(self) -> list[int] | None:
        layers = self.options.get("layers")
        return list(layers) if layers is not None else None


def settings_from_dict(data: Any, where: str) -> SparseVLMSettings:
    """Validate a settings object; errors name `where` (the file) and the field."""
    check_format(data, where, FORMAT, FORMAT_VERSION, SettingsError)
    if data.get("method") != "sparsevlm":
        raise SettingsError(f"{where}: field 'method' is {data.get('method')!r}, expected 'sparsevlm'")
    for name in ("keep", "scale", "bias"):
        if name not in data:
            raise SettingsError(f"{where}: missing field {name!r}")
    keep = data["keep"]
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise SettingsError(f"{where}: field 'keep' must be a positive int, got {keep!r}")
    for name in ("scale", "bias"):
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SettingsError(f"{where}: field {name!r} must be a finite number, got {value!r}")
    if data["scale"] < 0:
        raise SettingsError(f"{where}: field 'scale' must be ≥ 0, got {data['scale']!r}")
    for name in ("options", "model"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise SettingsError(f"{where}: field {name!r} must be an object or null, got {data[name]!r}")
    layers = (data.get("options") or {}).get("layers")
    if layers is not None and (not isinstance(layers, list) or not all(isinstance(l, int) for l in layers)):
        raise SettingsError(f"{where}: field 'options.layers' must be a list of layer indices or absent, got {layers!r}")
    return SparseVLMSettings(keep=keep, scale=float(data["scale"]), bias=float(data["bias"]),
                             options=dict(data.get("options") or {}), model=dict(data.get("model") or {}),
                             data=data, path=where)


def load_sparsevlm_settings(path: str | Path) -> SparseVLMSettings:
    """Read a settings file written by `llava-patch sparsevlm-calibrate`."""
    data = read_fitted(path, SettingsError,
                       "no such SparseVLM settings file (make one with `llava-patch sparsevlm-calibrate`)")
    return settings_from_dict(data, str(path))
