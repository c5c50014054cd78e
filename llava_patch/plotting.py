"""Figure files shared by every wing: PNG + PDF without timestamps."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def save_figure(figure: Figure, path: str | Path) -> list[Path]:
    """Write `figure` to `path`.png and `path`.pdf (`path` without suffix; names may hold dots, as
    "llava-1.5-7b"), without timestamps or software versions: the same figure gives the same bytes.
    Figures here are `Figure` objects (Agg renderer, no pyplot state)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = path.with_name(path.name + ".png"), path.with_name(path.name + ".pdf")
    figure.savefig(png, dpi=150, metadata={"Software": None})
    figure.savefig(pdf, metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return [png, pdf]
