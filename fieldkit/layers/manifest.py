"""A layered asset on disk: DIR/layers.json (names, prompts, order, transforms), one 3DGS .ply per
layer in DIR/layers/, and DIR/composite.ply, every layer placed. Each layer's .ply holds the layer
in its own frame (centred, as an asset of its own); its transform (a translation) places it in the
composite. layers.json is written last, so a directory with a readable one is complete.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fieldkit.atomic import output_directory, write_text
from fieldkit.errors import FieldkitError
from fieldkit.gaussians.files import load_splats
from fieldkit.gaussians.model import Splats
from fieldkit.gaussians.ply import write_ply
from fieldkit.layers.frames import frame_of, merged, translated

MANIFEST_NAME = "layers.json"
COMPOSITE_NAME = "composite.ply"
LAYER_FOLDER = "layers"
FORMAT_VERSION = 1


@dataclass
class Layer:
    name: str
    prompt: str | None
    """what the layer alone shows (None where nobody said, e.g. a layer composed from another asset)"""
    splats: Splats
    """in the layer's own frame"""
    translation: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """moves the layer's own frame into the composite's"""
    placement: str | None = None
    """where the prompt put it relative to the layers below ("on top"), if anywhere"""

    def placed(self) -> Splats:
        return translated(self.splats, torch.tensor(self.translation))


@dataclass
class LayeredAsset:
    layers: list[Layer]
    """bottom (the base) first"""
    prompt: str | None = None
    """the composite's prompt"""

    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise FieldkitError(f"no layer named {name!r}; the layers are: {', '.join(self.names())}")

    def without(self, name: str) -> LayeredAsset:
        self.layer(name)  # an unknown name is an error, not a no-op
        return LayeredAsset([layer for layer in self.layers if layer.name != name], self.prompt)

    def composite(self) -> Splats:
        return merged([layer.placed() for layer in self.layers])


def centred_layers(layers: list[Layer], prompt: str | None) -> LayeredAsset:
    """`layers` whose splats share one world, each re-centred on its own opaque box, with
    translations that centre the composite on the origin."""
    centre = frame_of(merged([layer.placed() for layer in layers])).centre
    centred = []
    for layer in layers:
        placed = layer.placed()
        own = frame_of(placed).centre
        centred.append(Layer(layer.name, layer.prompt, translated(placed, -own), (own - centre).tolist(), layer.placement))
    return LayeredAsset(centred, prompt)


def write_layered(asset: LayeredAsset, out: str | Path, extra: dict | None = None) -> Path:
    """Every layer's .ply, the composite's, then layers.json (atomically, each) -> the manifest's path."""
    out = output_directory(out)
    entries = []
    for order, layer in enumerate(asset.layers):
        relative = f"{LAYER_FOLDER}/{layer.name}.ply"
        write_ply(layer.splats, out / relative)
        entries.append({"name": layer.name, "prompt": layer.prompt, "order": order, "file": relative,
                        "placement": layer.placement,
                        "splats": len(layer.splats), "transform": {"translation": layer.translation}})
    write_ply(asset.composite(), out / COMPOSITE_NAME)
    manifest = {"format_version": FORMAT_VERSION, "kind": "layered splats", "prompt": asset.prompt,
                "composite": COMPOSITE_NAME, "layers": entries} | (extra or {})
    write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2))
    return out / MANIFEST_NAME


def manifest_path(path: str | Path) -> Path:
    """DIR/layers.json for a directory, the path itself for a file."""
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() else path


def is_layered(path: str | Path) -> bool:
    path = Path(path)
    return (path.is_dir() and (path / MANIFEST_NAME).exists()) or path.name == MANIFEST_NAME


def _checked_entry(entry, index: int, path: Path) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("file"), str):
        raise FieldkitError(f"{path}: layer {index} needs a name and a file")
    translation = entry.get("transform", {}).get("translation") if isinstance(entry.get("transform"), dict) else None
    if not (isinstance(translation, list) and len(translation) == 3 and
            all(isinstance(value, (int, float)) and math.isfinite(value) for value in translation)):
        raise FieldkitError(f"{path}: layer {entry['name']!r} needs a transform with a translation of 3 finite numbers")
    if Path(entry["file"]).is_absolute() or ".." in Path(entry["file"]).parts:
        raise FieldkitError(f"{path}: layer {entry['name']!r} names a file outside its directory: {entry['file']}")
    return entry


def read_layered(path: str | Path) -> LayeredAsset:
    """A layered asset from DIR or DIR/layers.json; any problem is one FieldkitError naming the file."""
    path = manifest_path(path)
    try:
        manifest = json.loads(path.read_text())
    except OSError as error:
        raise FieldkitError(f"cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FieldkitError(f"{path} is not valid JSON ({error}): a corrupt layers manifest") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "layered splats" or \
            not isinstance(manifest.get("layers"), list) or not manifest["layers"]:
        raise FieldkitError(f"{path} is not a layers manifest (it needs \"kind\": \"layered splats\" and a list of layers)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise FieldkitError(f"{path} has format version {manifest.get('format_version')!r}; this fieldkit reads "
                            f"{FORMAT_VERSION}")
    entries = sorted((_checked_entry(entry, index, path) for index, entry in enumerate(manifest["layers"])),
                     key=lambda entry: entry.get("order", 0))
    names = [entry["name"] for entry in entries]
    if len(set(names)) != len(names):
        raise FieldkitError(f"{path}: layer names repeat ({', '.join(names)})")
    layers = [Layer(entry["name"], entry.get("prompt"), load_splats(path.parent / entry["file"]),
                    [float(value) for value in entry["transform"]["translation"]], entry.get("placement"))
              for entry in entries]
    return LayeredAsset(layers, manifest.get("prompt"))

