"""Layered generation benchmark: "a red cube" with the layer "a blue sphere on top", from the built-in
prior on CPU, scored as `fieldkit.layers.scoring` scores layered assets, beside the same figures of
the ground truth's stack (splats sampled on its signed distance functions: the best a layered asset
can score), and the base scored before the layer was added and after removing it again.

    python bench/layers.py [--steps N] [--resolution PX] [--max-splats N] [--seed S] [--work DIR]
                           [--no-geometry] [--picture docs/layers.png] [--out bench/results/layers.json]

--work keeps the run directory (a rerun with the same settings resumes it, or reads its finished
result). Geometry: silhouette IoU of each layer against its own object's shape, and of the composite
against the prompt's stack, at elevations 0-80 after fitting scale and turn, and each layer's IoU
from below (-60 to -20), which shows whether the parts the base hid were completed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from fieldkit.atomic import write_text
from fieldkit.gaussians.files import load_splats
from fieldkit.generate.config import GenerateConfig
from fieldkit.guidance.prior import load_prior
from fieldkit.layers.manifest import Layer, LayeredAsset, read_layered
from fieldkit.layers.picture import write_picture
from fieldkit.layers.pipeline import RUNS, generate_layers
from fieldkit.layers.scoring import geometry, layer_scores, scores
from fieldkit.layers.truth import truth_layers
from provenance import measured

BASE, LAYER = "a red cube", "a blue sphere on top"


def _figure(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def asset_rows(label: str, asset: LayeredAsset, with_geometry: bool) -> list[dict]:
    """One row for the composite and one a layer: evaluator scores and geometry."""
    figures = scores(asset, with_geometry)
    rows = [{"asset": label, "part": "composite", "prompt": asset.prompt,
             "fidelity": figures["composite"]["fidelity"], "pieces": figures["composite"]["pieces"],
             "geometry": figures["composite"].get("geometry")}]
    for name, layer in figures["layers"].items():
        rows.append({"asset": label, "part": name} | layer)
    return rows


def base_rows(work: Path, asset: LayeredAsset) -> list[dict]:
    """The base alone as generated (before any layer), and the layered asset without its layer."""
    name = asset.layers[0].name
    before = LayeredAsset([Layer(name, asset.layers[0].prompt, load_splats(work / RUNS / name / "splats.ply"))])
    after = asset.without(asset.layers[1].name)
    return [{"asset": "generated", "part": f"{name} {label}"} | layer_scores(version, name)
            for label, version in (("before the layer", before), ("with the layer removed", after))]


def print_table(rows: list[dict]) -> None:
    print(f"{'asset':<13} {'part':<32} {'fidelity':>8} {'hidden views':>12} {'on them':>8} {'IoU 0-80':>8} "
          f"{'IoU below':>9}")
    for row in rows:
        shape = row.get("geometry") or {}
        print(f"{row['asset']:<13} {row['part']:<32} {_figure(row['fidelity']):>8} "
              f"{row.get('hidden_views', '-')!s:>12} {_figure(row.get('fidelity_hidden_views')):>8} "
              f"{_figure(shape.get('iou')):>8} {_figure(shape.get('iou_below')):>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--max-splats", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="run directory to keep (default: a temporary one)")
    parser.add_argument("--no-geometry", dest="geometry", action="store_false",
                        help="skip the geometry (the slowest part: minutes per asset on a loaded 2-core CPU)")
    parser.add_argument("--picture", default="docs/layers.png")
    parser.add_argument("--out", default="bench/results/layers.json")
    args = parser.parse_args()
    config = GenerateConfig(steps=args.steps, resolution=args.resolution, max_splats=args.max_splats, seed=args.seed,
                            checkpoint_seconds=60, geometry_metrics=False)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.work or temporary)
        started = time.perf_counter()
        generate_layers(BASE, [LAYER], work, config, load_prior(None), log=print)
        wall = time.perf_counter() - started
        generated = read_layered(work)
        stage_seconds = {stage.name: json.loads((stage / "metrics.json").read_text())["seconds"]
                         for stage in sorted((work / RUNS).iterdir())}
        rows = asset_rows("generated", generated, args.geometry) + base_rows(work, generated)
        rows += asset_rows("ground truth", truth_layers([BASE, "a blue sphere"]), args.geometry)
        write_picture(generated, args.picture)
    print_table(rows)
    result = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": torch.get_num_threads()},
              "measured": measured(), "load": list(os.getloadavg()), "settings": vars(args),
              "wall_seconds": wall, "stage_seconds": stage_seconds, "rows": rows}
    write_text(args.out, json.dumps(result, indent=2))
    print(f"wrote {args.out} and {args.picture}")


if __name__ == "__main__":
    main()
