"""Figure files shared by every wing: PNG + PDF without timestamps, and optionally a JSON sidecar
saying where the figure came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from matplotlib.figure import Figure


def save_figure(figure: Figure, path: str | Path, metadata: Mapping[str, Any] | None = None) -> list[Path]:
    """Write `figure` to `path`.png and `path`.pdf (`path` without suffix; names may hold dots, as
    "llava-1.5-7b"), without timestamps or software versions: the same figure gives the same bytes.
    Figures here are `Figure` objects (Agg renderer, no pyplot state).

    metadata: also written beside them as `path`.json (JSON-serialisable; keys kept in their order),
    for what the image cannot say in full: the model, data and command that made it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = path.with_name(path.name + ".png"), path.with_name(path.name + ".pdf")
    figure.savefig(png, dpi=150, metadata={"Software": None})
    figure.savefig(pdf, metadata={"Creator": None, "Producer": None, "CreationDate": None})
    if metadata is None:
        return [png, pdf]
    sidecar = path.with_name(path.name + ".json")
    sidecar.write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [png, pdf, sidecar]
