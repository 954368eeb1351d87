"""`fieldkit generate "BASE" --layer "LAYER" ... --out DIR`: the base as splats, then each layer
on the ones before it (`training.py`), then the layered asset (`manifest.py`), its scores
(`scoring.py`) and a picture of the layers apart and together.

Every stage is an ordinary generation run in DIR/runs/NAME, so a stopped run resumes where it
stopped, stage by stage. The base stays as generated unless `refine_base`: then, once every layer
exists, the base is optimised once more the way a layer is (the layers frozen), which changes it.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from fieldkit.atomic import write_text
from fieldkit.gaussians.files import load_splats
from fieldkit.gaussians.model import Splats
from fieldkit.gaussians.trainer import PLY_NAME
from fieldkit.generate.api import make_run
from fieldkit.generate.config import GenerateConfig
from fieldkit.guidance.prior import Prior
from fieldkit.layers.manifest import MANIFEST_NAME, Layer, LayeredAsset, centred_layers, write_layered
from fieldkit.layers.frames import merged, resting_offset
from fieldkit.layers.prompts import ON_TOP, composite_prompt, layer_name, parse_layer
from fieldkit.layers.training import LayerGeneration
from fieldkit.rendering import distinct_names
from fieldkit.runs import METRICS_NAME, RunDirectory

RUNS = "runs"
PICTURE_NAME = "layers.png"


def run_stage(run, log) -> Splats:
    if run.resuming and run.finished_metrics() is None:
        log(f"resuming the stage in {run.run.path}")
    run.generate()
    return load_splats(run.run.file(PLY_NAME))


def generate_layers(base: str, layer_texts: list[str], out: str | Path, config: GenerateConfig, prior: Prior,
                    refine_base: bool = False, log=lambda line: None) -> dict:
    """Generates (or resumes, or returns the finished result of) a layered asset in `out` -> metrics."""
    from fieldkit.errors import FieldkitError

    if config.rep != "gaussians":
        raise FieldkitError("layers are splats: drop --rep field (or use --rep gaussians) with --layer")
    base = prior.normalise_prompt(base)
    layers = [parse_layer(text) for text in layer_texts]
    names = distinct_names([layer_name(base)] + [layer.name for layer in layers])
    for index in range(len(layers)):  # every prompt the run will need, checked before any file is written
        prior.normalise_prompt(composite_prompt(base, layers[:index + 1]))
        prior.normalise_prompt(layers[index].own)
    out = Path(out)
    run = RunDirectory(out)
    run.claim({"kind": "layered generate", "base": base, "layers": layer_texts, "refine_base": refine_base,
               "prior": prior.source, "config": asdict(config)})
    if run.file(METRICS_NAME).exists() and run.file(MANIFEST_NAME).exists():
        return json.loads(run.file(METRICS_NAME).read_text())
    stages = out / RUNS
    splats = [run_stage(make_run(base, stages / names[0], config, prior), log)]
    for index, layer in enumerate(layers):
        log(f"layer {names[index + 1]!r}: {layer.own!r}, with the composite prompt "
            f"{composite_prompt(base, layers[:index + 1])!r}")
        stage = LayerGeneration(composite_prompt(base, layers[:index + 1]), layer.own, layer.placement, splats,
                                stages / names[index + 1], config, prior)
        splats.append(run_stage(stage, log))
    if refine_base:
        stage = LayerGeneration(composite_prompt(base, layers), base, None, splats[1:],
                                stages / f"{names[0]}_refined", config, prior, start=splats[0])
        splats[0] = run_stage(stage, log)
    parts = [Layer(names[0], base, splats[0])]
    resting = {}
    for name, layer, part in zip(names[1:], layers, splats[1:]):
        offset = [0.0, 0.0, 0.0]
        if layer.placement == ON_TOP:
            offset[2] = resting[name] = resting_offset(part, merged([each.placed() for each in parts]))
        parts.append(Layer(name, layer.own, part, offset, layer.placement))
    asset = centred_layers(parts, prior.normalise_prompt(composite_prompt(base, layers)))
    return finish(asset, out, config, {"refine_base": refine_base, "layer_prompts": layer_texts,
                                       "rested_by": resting})


def finish(asset: LayeredAsset, out: Path, config: GenerateConfig, extra: dict) -> dict:
    """Scores, the picture, the layered files and metrics.json (last: a run with it is finished)."""
    from fieldkit.layers.picture import write_picture
    from fieldkit.layers.scoring import scores

    metrics = scores(asset, config.geometry_metrics) | extra
    write_picture(asset, out / PICTURE_NAME)
    write_layered(asset, out, {"metrics": METRICS_NAME})
    write_text(out / METRICS_NAME, json.dumps(metrics, indent=2))
    return metrics
