"""The built-in prior: load time, and prompt fidelity of its samples over the whole vocabulary.

    python bench/prior.py [--prior DIR] [--n 8] [--out bench/results/prior.json]

For every single-object prompt ("a red cube", ...) it samples `--n` images at the default
guidance scale and at guidance 1 (no classifier-free guidance: the baseline), and the evaluator
names each image's shape and colour. Prints per-shape and per-colour tables, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from fieldkit.atomic import write_text
from fieldkit.guidance.prior import load_prior
from fieldkit.prior.dataset import COLOUR_NAMES
from fieldkit.prior.evaluator import load_evaluator, score_images
from fieldkit.prior.sampling import DEFAULT_GUIDANCE_SCALE, sample_images
from fieldkit.prior.vocabulary import SHAPES
from provenance import measured

LOAD_SNIPPET = """
import time, torch
started = time.perf_counter()
from fieldkit.guidance.prior import load_prior
imported = time.perf_counter()
load_prior({source!r})
print(imported - started, time.perf_counter() - imported)
"""


def load_seconds(source: str | None) -> dict:
    """Import and from_pretrained seconds, in a fresh interpreter (nothing cached in memory)."""
    output = subprocess.run([sys.executable, "-c", LOAD_SNIPPET.format(source=source)], capture_output=True,
                            text=True, check=True).stdout.split()
    return {"import_seconds": float(output[-2]), "load_seconds": float(output[-1])}


def fidelity_table(prior, evaluator, n: int, guidance_scale: float) -> list[dict]:
    rows = []
    for shape in SHAPES:
        for colour in COLOUR_NAMES:
            prompt = f"a {colour} {shape}"
            images = sample_images(prior, prompt, n, guidance_scale=guidance_scale, seed=0)
            scores = score_images(images, prompt, evaluator)  # fractions: "shape", "colour", "fidelity"
            rows.append({"prompt": prompt, "prompt_shape": shape, "prompt_colour": colour} | scores)
    return rows


def summarise(rows: list[dict]) -> dict:
    def mean(key: str, subset: list[dict]) -> float:
        return sum(row[key] for row in subset) / len(subset)

    return {"fidelity": mean("fidelity", rows),
            "per_shape": {shape: mean("shape", [r for r in rows if r["prompt_shape"] == shape]) for shape in SHAPES},
            "per_colour": {colour: mean("colour", [r for r in rows if r["prompt_colour"] == colour])
                           for colour in COLOUR_NAMES},
            "prompts_at_or_above_0.9": sum(row["fidelity"] >= 0.9 for row in rows) / len(rows)}


def print_summary(name: str, summary: dict) -> None:
    print(f"\n{name}: mean fidelity {summary['fidelity']:.3f}, prompts >= 0.9: {summary['prompts_at_or_above_0.9']:.2f}")
    print("  shape accuracy  " + "  ".join(f"{k} {v:.2f}" for k, v in summary["per_shape"].items()))
    print("  colour accuracy " + "  ".join(f"{k} {v:.2f}" for k, v in summary["per_colour"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default=None, help="pipeline directory (default: the shipped prior)")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--out", default="bench/results/prior.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loading = load_seconds(args.prior)
    print(f"import {loading['import_seconds']:.2f} s, from_pretrained {loading['load_seconds']:.2f} s")
    prior, evaluator = load_prior(args.prior), load_evaluator()
    results = {"machine": platform.processor() or platform.machine(), "measured": measured(), "threads": 1,
               "samples_per_prompt": args.n,
               "guidance_scale": DEFAULT_GUIDANCE_SCALE} | loading
    for name, scale in (("default guidance", DEFAULT_GUIDANCE_SCALE), ("no guidance (baseline)", 1.0)):
        started = time.perf_counter()
        rows = fidelity_table(prior, evaluator, args.n, scale)
        summary = summarise(rows) | {"guidance_scale": scale, "seconds": time.perf_counter() - started}
        print_summary(f"{name}, scale {scale:g}", summary)
        results[name] = summary | {"prompts": rows}
    write_text(Path(args.out), json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
