"""`fieldkit render DIR --orbit N` of a layered asset: every layer apart and the composite, each in a
folder of its own, from the same cameras (framed on the composite), so the images line up; or one
layer alone with `--layer NAME`."""
from __future__ import annotations

from pathlib import Path

from fieldkit.layers.frames import frame_of
from fieldkit.layers.manifest import read_layered
from fieldkit.layers.scoring import ring
from fieldkit.rendering import render_each

ELEVATION = 30.0
COMPOSITE_FOLDER = "composite"


def render_layers(path: str | Path, out: str | Path, count: int, resolution: int, layer: str | None = None) -> list[Path]:
    asset = read_layered(path)
    composite = asset.composite()
    cameras = ring(frame_of(composite), (ELEVATION,), count, resolution)
    names = [f"orbit_{index:03d}" for index in range(count)]
    if layer is not None:
        return render_each(asset.layer(layer).placed(), cameras, names, out)
    written = render_each(composite, cameras, names, Path(out) / COMPOSITE_FOLDER)
    for each in asset.layers:
        written += render_each(each.placed(), cameras, names, Path(out) / each.name)
    return written
