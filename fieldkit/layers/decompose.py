"""`fieldkit decompose ASSET --layer PROMPT ...`: an asset of one layer split into complete layers.

1. Splats (a mesh becomes splats sampled on its surface, coloured by its texture).
2. Split: k-means over each splat's colour and position (one cluster a prompt). Clusters go to
   prompts by colour where every prompt names a colour the built-in vocabulary knows (the palette
   colour nearest the cluster's), else bottom to top by height, as the prompts are ordered.
3. Completion: each layer in turn is optimised as a new layer is in `generate --layer`, from its
   own splats, with the others frozen: the hidden parts (where one object touched or covered
   another) are filled in by the prior.
Dimension letters: N splats, K layers.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

import torch

from fieldkit.errors import FieldkitError
from fieldkit.gaussians.initialise import splats_from_points
from fieldkit.gaussians.model import PARAMETER_NAMES, Splats
from fieldkit.layers.frames import OPAQUE, frame_of
from fieldkit.layers.manifest import MANIFEST_NAME, Layer, centred_layers
from fieldkit.layers.prompts import composite_prompt, parse_layer
from fieldkit.rendering import distinct_names
from fieldkit.runs import METRICS_NAME, RunDirectory

POSITION_WEIGHT = 0.5
"""Position (in units of the asset's size) counts half as much as colour (in [0, 1] per channel)."""
KMEANS_STEPS = 50
MESH_SAMPLES = 8000
MESH_OPACITY = 0.95


def kmeans(features: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:  # [N, D] -> labels [N]
    """Lloyd's k-means from a k-means++ start."""
    centres = features[torch.randint(len(features), (1,), generator=generator)]
    while len(centres) < count:
        distance = torch.cdist(features, centres).amin(dim=1).square()
        centres = torch.cat([centres, features[torch.multinomial(distance + 1e-12, 1, generator=generator)]])
    for _ in range(KMEANS_STEPS):
        labels = torch.cdist(features, centres).argmin(dim=1)
        centres = torch.stack([features[labels == k].mean(dim=0) if (labels == k).any() else centres[k]
                               for k in range(count)])
    return torch.cdist(features, centres).argmin(dim=1)


def _prompt_colour(prompt: str) -> torch.Tensor | None:
    from fieldkit.prior.vocabulary import COLOURS

    named = [COLOURS[word] for word in prompt.lower().replace(",", " ").split() if word in COLOURS]
    return torch.tensor(named[0]) if len(named) == 1 else None


def cluster_order(splats: Splats, labels: torch.Tensor, prompts: list[str]) -> list[int]:
    """The cluster that goes to each prompt: by nearest palette colour where every prompt names one,
    else by height (the first prompt is the bottom)."""
    count = len(prompts)
    colours = [_prompt_colour(prompt) for prompt in prompts]
    means = torch.stack([splats.base_colours().detach()[labels == k].mean(dim=0) for k in range(count)])
    if all(colour is not None for colour in colours):
        cost = lambda order: sum(float((means[cluster] - colours[index]).norm()) for index, cluster in enumerate(order))
        return list(min(itertools.permutations(range(count)), key=cost))
    heights = [float(splats.means.detach()[labels == k, 2].mean()) for k in range(count)]
    return sorted(range(count), key=lambda k: heights[k])


def split(splats: Splats, prompts: list[str], seed: int = 0) -> list[Splats]:
    """One splat set a prompt, bottom first."""
    if len(prompts) < 2:
        raise FieldkitError("decompose needs two or more --layer prompts (one a layer, bottom first)")
    opaque = torch.sigmoid(splats.opacity_logits.detach()) >= OPAQUE * 0.2
    if opaque.sum() < 4 * len(prompts):
        raise FieldkitError(f"the asset has {int(opaque.sum())} visible splats: too few to split into "
                            f"{len(prompts)} layers")
    frame = frame_of(splats)
    features = torch.cat([splats.base_colours().detach(), POSITION_WEIGHT * (splats.means.detach() - frame.centre) / frame.size],
                         dim=1)
    labels = kmeans(features[opaque], len(prompts), torch.Generator().manual_seed(seed))
    labels_all = torch.cdist(features, torch.stack([features[opaque][labels == k].mean(dim=0)
                                                    for k in range(len(prompts))])).argmin(dim=1)
    order = cluster_order(splats, labels_all, prompts)
    return [Splats(**{name: getattr(splats, name).detach()[labels_all == cluster] for name in PARAMETER_NAMES},
                   background=splats.background) for cluster in order]


def mesh_splats(path: Path, generator: torch.Generator) -> Splats:
    """Splats on a mesh's surface (area-weighted samples), coloured by its texture."""
    from fieldkit.mesh.files import load_mesh
    from fieldkit.render.mesh import sample_texture

    mesh = load_mesh(path)
    corners = mesh.vertices[mesh.faces]  # [F, 3, 3]
    areas = torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1).norm(dim=-1)
    faces = torch.multinomial(areas, MESH_SAMPLES, replacement=True, generator=generator)
    weights = torch.rand(MESH_SAMPLES, 2, generator=generator)
    flip = weights.sum(dim=1) > 1
    weights[flip] = 1 - weights[flip]
    barycentric = torch.cat([1 - weights.sum(dim=1, keepdim=True), weights], dim=1)  # [N, 3]
    points = (corners[faces] * barycentric[..., None]).sum(dim=1)
    uv = (mesh.uvs[mesh.uv_faces[faces]] * barycentric[..., None]).sum(dim=1)
    return splats_from_points(points, sample_texture(mesh.texture, uv), MESH_OPACITY, 0, torch.ones(3))


def read_asset(path: str | Path, seed: int = 0) -> Splats:
    """Splats from a splat file or asset, or sampled on a mesh; one error line for anything else."""
    from fieldkit.io import load
    from fieldkit.mesh.files import is_mesh_file

    path = Path(path)
    if not path.exists():
        raise FieldkitError(f"{path} does not exist")
    if is_mesh_file(path):
        return mesh_splats(path, torch.Generator().manual_seed(seed))
    asset = load(path)
    if not isinstance(asset, Splats):
        raise FieldkitError(f"{path} holds a {getattr(asset, 'kind', type(asset).__name__)}, not splats or a mesh; "
                            "convert it first (`fieldkit convert ASSET --to gaussians`)")
    return asset


def decompose(asset_path: str | Path, layer_texts: list[str], out: str | Path, config, prior, complete: bool = True,
              log=lambda line: None) -> dict:
    """Splits (and completes) an asset into layers in `out` -> metrics (of a finished run, if there is one)."""
    from fieldkit.layers.pipeline import RUNS, finish, run_stage
    from fieldkit.layers.training import LayerGeneration

    layers = [parse_layer(text) for text in layer_texts]
    composite = composite_prompt(layers[0].own, layers[1:])
    for text in [layer.own for layer in layers] + [composite]:
        prior.normalise_prompt(text)  # bad prompts fail before any file is written
    parts = split(read_asset(asset_path, config.seed), [layer.own for layer in layers], config.seed)
    out = Path(out)
    run = RunDirectory(out)
    run.claim({"kind": "decompose", "asset": str(asset_path), "layers": layer_texts, "complete": complete,
               "prior": prior.source, "config": asdict(config)})
    if run.file(METRICS_NAME).exists() and run.file(MANIFEST_NAME).exists():
        return json.loads(run.file(METRICS_NAME).read_text())
    names = distinct_names([layer.name for layer in layers])
    if complete:
        for index, layer in enumerate(layers):
            log(f"completing layer {names[index]!r} ({layer.own!r})")
            others = parts[:index] + parts[index + 1:]
            stage = LayerGeneration(composite, layer.own, None, others, out / RUNS / names[index], config, prior,
                                    start=parts[index])
            parts[index] = run_stage(stage, log)
    asset = centred_layers([Layer(name, layer.own, part, placement=layer.placement)
                            for name, layer, part in zip(names, layers, parts)], prior.normalise_prompt(composite))
    return finish(asset, out, config, {"source": str(asset_path), "completed": complete})
