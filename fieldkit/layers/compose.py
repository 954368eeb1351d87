"""`fieldkit compose A B ... --out DIR`: a layered asset from others. The first asset is the base
(all its layers, when it is layered); each further one adds its layers (or the one `--layer`
names) on top, moved to `--translate` when given, else placed as it was in its own asset."""
from __future__ import annotations

from pathlib import Path

from fieldkit.errors import FieldkitError
from fieldkit.layers.manifest import Layer, LayeredAsset, is_layered, read_layered, write_layered
from fieldkit.rendering import distinct_names


def as_layered(path: str | Path) -> LayeredAsset:
    """A layered directory as it is; a splat file as one layer named after it, in its own frame."""
    from fieldkit.layers.decompose import read_asset
    from fieldkit.layers.manifest import centred_layers

    if is_layered(path):
        return read_layered(path)
    if Path(path).is_dir():
        raise FieldkitError(f"{path} is a directory without layers.json: not a layered asset")
    return centred_layers([Layer(Path(path).stem, None, read_asset(path))], None)


def compose(paths: list[str], out: str | Path, translations: list[list[float]] | None = None,
            layer_names: list[str] | None = None, without: list[str] | None = None) -> Path:
    translations, layer_names, without = translations or [], layer_names or [], without or []
    added = len(paths) - 1
    for option, values in (("--translate", translations), ("--layer", layer_names)):
        if len(values) > added:
            raise FieldkitError(f"{len(values)} {option} given for {added} added asset(s)")
    result = as_layered(paths[0])
    layers = list(result.layers)
    for index, path in enumerate(paths[1:]):
        asset = as_layered(path)
        chosen = [asset.layer(layer_names[index])] if index < len(layer_names) else asset.layers
        for layer in chosen:
            translation = list(translations[index]) if index < len(translations) else layer.translation
            layers.append(Layer(layer.name, layer.prompt, layer.splats, translation, layer.placement))
    for name in without:
        result = LayeredAsset(layers, result.prompt).without(name)
        layers = result.layers
    if not layers:
        raise FieldkitError("--without leaves no layer")
    names = distinct_names([layer.name for layer in layers])
    layers = [Layer(name, layer.prompt, layer.splats, layer.translation, layer.placement)
              for name, layer in zip(names, layers)]
    prompt = result.prompt if len(paths) == 1 and not without else None
    return write_layered(LayeredAsset(layers, prompt), out)
