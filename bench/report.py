"""Writes docs/benchmarks.md, and the headline tables in README.md, from bench/results/*.json.

    python bench/report.py            # rewrite both
    python bench/report.py --check    # exit 1 when either is out of date with the JSON

Every table says the date and commit its figures were measured on: the `measured` entry of its
section, row or file (see bench/provenance.py). The README's tables sit between the markers
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->`; only the blocks present there are rewritten.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
MLP_TOLERANCE, TOLERANCE = 1.5, 1.0  # dB below the teacher's test PSNR that a conversion may lose
HEADLINE_LABELS = {"scratch": "MLP trained from scratch on the photos",
                   "distilled": "MLP distilled from the hash grid, active learning",
                   "distilled_no_active": "MLP distilled from the hash grid, no active learning"}


# -- formatting -----------------------------------------------------------------------------

def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def number(value, digits: int = 2, missing: str = "-") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}"


def spread(values: list[float], digits: int = 0) -> str:
    """"12" or "12-15": the range of `values` as printed."""
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}-{high}"


def table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    """A markdown table; columns in `right` are right-aligned (figures)."""
    rule = ["---:" if index in right else "---" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def when(entry: dict) -> str:
    text = f"{entry['date']}, commit `{entry['commit']}`"
    return text + " (with uncommitted changes)" if entry.get("uncommitted_changes") else text


def measured_of(*items: dict, default: dict) -> list[dict]:
    """The distinct `measured` entries of `items` (each falling back to `default`), oldest first."""
    seen = {}
    for item in items:
        entry = item.get("measured", default)
        seen[(entry["date"], entry["commit"])] = entry
    return [seen[key] for key in sorted(seen)]


def measured_line(entries: list[dict]) -> str:
    if len(entries) == 1:
        return f"Measured {when(entries[0])}"
    return "Measured " + "; ".join(when(entry) for entry in entries)


def machine(results: dict, threads: int | None = None) -> str:
    """The machine a results file names, in words."""
    described = results.get("machine")
    if isinstance(described, str):  # prior.json: "x86_64"; viewer.json: "x86_64, 2 cores, torch 2.13.0+cpu"
        cpu, *rest = described.split(", ")
        words, torch = f"{cpu} CPU", "".join(f", {part}" for part in rest)
    else:
        platform = described.get("platform") or described.get("cpu") or ""
        cpu = "x86_64" if "x86_64" in platform else platform or "unknown"
        words, torch = f"{cpu} CPU", f", torch {described['torch']}" if described.get("torch") else ""
        threads = threads or described.get("threads")
    thread_words = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return f"{words}{torch}{thread_words}"


def batch_threads(section: dict) -> int | None:
    """Threads per run of a sweep run as a batch: Ray gives each of several workers' jobs one thread."""
    return 1 if section.get("workers", 1) > 1 else None


# -- sections ------------------------------------------------------------------------------

def optimisation_cpu_notes(runs: list[dict]) -> str:
    """For rows measured while the load exceeded their threads, the CPU seconds of optimisation
    (one thread: what a quiet machine's wall clock would show), which that load's wall clock stretches."""
    notes = []
    for row in runs:
        load = row.get("load_average") or {}
        if not row.get("cpu_history") or max(load.get("before", [0])[0], load.get("after", [0])[0]) <= row["threads"]:
            continue
        step, cpu = row["cpu_history"][-1]
        budget = f", `--max-seconds {row['max_seconds']:g}`" if row.get("max_seconds") not in (None, 600) else ""
        line = (f"`{row['architecture']}` on {row['scene']} ({row['threads']} thread, load "
                f"{row['load_average']['before'][0]:.0f}-{row['load_average']['after'][0]:.0f}{budget}): "
                f"{cpu:.0f} CPU seconds of optimisation to step {step}")
        for target in TRAIN_TARGETS:
            if row.get(f"cpu_seconds_to_{target:g}dB") is not None:
                line += f", {target:g} dB after {row[f'cpu_seconds_to_{target:g}dB']:.0f}"
        notes.append(line)
    return "; ".join(notes)


TRAIN_TARGETS = (28.0, 30.0)


def train_section(results: dict) -> list[str]:
    runs = results["runs"]
    scenes = sorted({row["scene"] for row in runs})
    def load(row: dict) -> str:
        figures = row.get("load_average")
        return "-" if figures is None else f"{figures['before'][0]:.1f}-{figures['after'][0]:.1f}"

    rows = [[f"`{row['architecture']}`", row["scene"], str(row["steps"]), number(row["seconds"], 0),
             number(row["psnr_test"]), number(row["ssim_test"], 3), f"{row['parameters']:,}",
             number(row["seconds_to_25dB"], 0), number(row["seconds_to_28dB"], 0),
             number(row.get("seconds_to_30dB"), 0), number(row.get("cpu_seconds_with_evaluation"), 0),
             str(row.get("threads", "-")), load(row)] for row in runs]
    lines = ["## Training fields: `fieldkit train`", "",
             f"{measured_line(measured_of(*runs, default=results['measured']))}, on an "
             f"{machine(results)}. `python bench/train.py` trains every architecture at `fieldkit train`'s "
             "defaults (`--scenes all` for every built-in scene) and writes `bench/results/train.json`.", "",
             "Seconds are optimisation time. The seconds to a PSNR are those of the first probe (every 100 steps, "
             "on 4 test views) at or above it; PSNR and SSIM are means over all test views. The machine is shared: "
             "the load column is its 1-minute load average before and after the run (2 cores), which stretches "
             "wall-clock seconds; CPU seconds (the process's user and system time, test probes and the final "
             "evaluation included) are not stretched by it.", "",
             table(["architecture", "scene", "steps", "seconds", "test PSNR (dB)", "SSIM", "parameters",
                    "seconds to 25 dB", "seconds to 28 dB", "seconds to 30 dB", "CPU seconds", "threads", "load"],
                   rows, right={2, 3, 4, 5, 6, 7, 8, 9, 10, 11})]
    if results.get("note"):
        lines += ["", results["note"]]
    if optimisation_cpu_notes(runs):
        lines += ["", "Where the load stretched the wall clock, the rows record the CPU seconds of optimisation "
                  "(probes excluded) as well: " + optimisation_cpu_notes(runs) + "."]
    gaps = [row for row in runs if "torch_reference" in row]
    if gaps:
        lines += ["", "Native kernels against their torch references (`--reference-gap`: the same run with "
                  "`FIELDKIT_NATIVE=0`, for the same number of steps): " + "; ".join(
                      f"`{row['architecture']}` on {row['scene']}, {row['psnr_test']:.2f} dB native and "
                      f"{row['torch_reference']['psnr_test']:.2f} dB on the references "
                      f"({row['torch_reference']['seconds']:.0f} s, load "
                      f"{row['torch_reference']['load_average']['before'][0]:.1f})" for row in gaps) + "."]
    if scenes == ["tabletop"]:
        lines += ["", "Only the default scene, `tabletop`, has been benchmarked."]
    return lines


def headline_rows(headline: dict) -> list[tuple[str, dict]]:
    runs, labelled = headline["runs"], []
    tenth = (runs["scratch"]["seconds_to_scratch_psnr"] or runs["scratch"]["seconds"]) / 10
    for name, run in runs.items():
        if name in HEADLINE_LABELS:
            label = HEADLINE_LABELS[name]
        elif name.startswith("distilled_from_"):
            label = f"MLP distilled from {name.removeprefix('distilled_from_')} (`--strong-teacher`)"
        elif name.endswith("_in_a_tenth"):
            label = f"the same, given a tenth of the scratch run's time (`--max-seconds {tenth:.0f}`)"
        else:
            label = name
        labelled.append((label, run))
    return labelled


def speedup(run: dict) -> str:
    return "-" if run.get("speedup") is None else f"{run['speedup']:.1f}x"


def headline_section(results: dict) -> list[str]:
    headline = results["headline"]
    runs, target = headline["runs"], headline["target_psnr"]
    rows = [[label, str(run["steps"]), number(run["seconds"], 0), number(run["psnr_test"]),
             number(run.get("psnr_vs_teacher")), number(run.get("teacher_psnr_test")),
             number(run["seconds_to_scratch_psnr"], 0, "not reached"), speedup(run)]
            for label, run in headline_rows(headline)]
    lines = ["## Converting fields: `fieldkit convert`", "", "### Headline: distillation against training from scratch",
             "", f"{measured_line([headline.get('measured', results['measured'])])}, on an {machine(results)}, "
             f"scene `{results['scene']}` (`OMP_NUM_THREADS=2 python bench/convert.py --skip-matrix`).", "",
             "PVD's headline experiment: the MLP trained from scratch on the photos against the same MLP distilled "
             "from a trained teacher. The target is the scratch run's final test PSNR, "
             f"{target:.2f} dB; test PSNR is probed every 50 steps on 4 test views, and the probes are not timed. "
             "The speedup is the scratch run's seconds to the target over the distilled run's.", "",
             table(["run", "steps", "seconds", "test PSNR (dB)", "PSNR vs teacher (dB)", "teacher test PSNR (dB)",
                    f"seconds to {target:.2f} dB", "speedup"], rows, right={1, 2, 3, 4, 5, 6, 7})]
    tenth = next((run for name, run in runs.items() if name.endswith("_in_a_tenth")), None)
    if tenth and tenth.get("seconds_to_scratch_psnr"):
        lines += ["", f"Given a tenth of the scratch run's time, the distilled MLP compresses its whole schedule "
                      f"into {tenth['seconds']:.0f} s ({tenth['steps']} of {tenth['planned_steps']} steps), passes "
                      f"the target after {tenth['seconds_to_scratch_psnr']:.0f} s, {tenth['speedup']:.1f}x sooner "
                      f"than the scratch run, and ends {tenth['psnr_test'] - target:.2f} dB above it."]
    if "distilled" in runs and "distilled_no_active" in runs:
        on, off = runs["distilled"], runs["distilled_no_active"]
        lines += ["", f"At the same {on['steps']} steps, active learning adds "
                      f"{on['psnr_vs_teacher'] - off['psnr_vs_teacher']:.1f} dB against the teacher and "
                      f"{on['psnr_test'] - off['psnr_test']:.1f} dB on the test images, at "
                      f"{on['seconds'] / off['seconds']:.1f}x the seconds."]
    return lines


def matrix_section(results: dict) -> list[str]:
    matrix = results["matrix"]
    teachers = {row["teacher"]: row["teacher_psnr_test"] for row in matrix}
    gaps = [row["psnr_test"] - row["teacher_psnr_test"] for row in matrix]
    within = sum(gap >= -(MLP_TOLERANCE if row["student"] == "mlp" else TOLERANCE) for gap, row in zip(gaps, matrix))
    entries = measured_of(*matrix, default=results["measured"])
    by_row = len(entries) > 1
    rows = [[f"`{row['teacher']}`", f"`{row['student']}`", str(row["steps"]), number(row["seconds"], 0),
             number(row["psnr_vs_teacher"]), number(row["psnr_test"]), number(row["teacher_psnr_test"]),
             signed(gap)] + ([row.get("measured", results["measured"])["commit"]] if by_row else [])
            for row, gap in zip(matrix, gaps)]
    header = ["teacher", "student", "steps", "seconds", "PSNR vs teacher (dB)", "test PSNR (dB)",
              "teacher test PSNR (dB)", "gap (dB)"] + (["commit"] if by_row else [])
    seconds = [row["seconds"] for row in matrix]
    return ["", "### Every architecture into every other", "",
            f"{measured_line(entries)}, on an {machine(results)}, scene `{results['scene']}` "
            "(`OMP_NUM_THREADS=2 python bench/convert.py --skip-headline`). Teachers trained at `fieldkit train`'s "
            "defaults: " + ", ".join(f"{name} {psnr:.2f} dB" for name, psnr in teachers.items()) + ". Test PSNR is "
            "over all test views; \"PSNR vs teacher\" is scored at 64 px on held-out synthetic views, which flatters "
            "it.", "",
            table(header, rows, right={2, 3, 4, 5, 6, 7}), "",
            f"{within} of {len(matrix)} pairs are within tolerance ({TOLERANCE:g} dB below the teacher's test PSNR, "
            f"{MLP_TOLERANCE:g} dB for an MLP student); the mean gap is {sum(gaps) / len(gaps):+.2f} dB, and the "
            f"conversions took {min(seconds):.0f}-{max(seconds):.0f} s."] + (
            ["", results["note"]] if results.get("note") else [])


def splats_section(results: dict) -> list[str]:
    raster = results["rasterizer"]
    raster_rows = [[f"{row['splats']:,}", str(row["pixels"]), number(row["seconds"], 3),
                    number(row["baseline_seconds"], 3), f"{row['speedup']:.1f}x", f"{row['max_difference']:.0e}"]
                   for row in raster]
    runs = splat_runs(results)
    run_rows = [[label, str(run["steps"]), number(run["seconds"], 0), number(run["psnr_test"]),
                 number(run.get("teacher_psnr_test")),
                 "-" if run.get("teacher_psnr_test") is None else signed(run["psnr_test"] - run["teacher_psnr_test"]),
                 run.get("measured", results["measured"])["commit"]] for label, run in runs]
    train, to_splats = results.get("train"), results.get("field_to_splats")
    lines = ["## Gaussian splats: `fieldkit train --arch gaussians` and `fieldkit convert` to and from splats", "",
             f"On an {machine(results)}, scene `{results['scene']}` (`python bench/splats.py`).", "",
             "### Rasterizer", "",
             f"{measured_line(measured_of(*raster, default=results['measured']))}. Forward + backward, best of 3, "
             "random splats in the scene box with trained splats' sizes (0.004-0.03) and opacities, one test "
             "camera. The baseline is 3DGS's 16 px tiles composited in torch and differentiated by autograd; "
             "\"difference\" is the largest difference between the two images.", "",
             table(["splats", "pixels", "fieldkit (s)", "16 px tiles (s)", "speedup", "difference"], raster_rows,
                   right={0, 1, 2, 3, 4, 5}), "",
             "### Training and conversions", "",
             f"{measured_line(measured_of(*(run for _, run in runs), default=results['measured']))}. Every run at "
             "its command's defaults; test PSNR over all test views.", "",
             table(["run", "steps", "seconds", "test PSNR (dB)", "teacher test PSNR (dB)", "gap (dB)", "commit"],
                   run_rows, right={1, 2, 3, 4, 5})]
    facts = []
    if train:
        facts.append(f"Splat training passes 27 dB after {train['seconds_to_27db']:.0f} s (4-view probes every 250 "
                     f"steps) and ends with {train['splats']:,} splats.")
    if to_splats:
        facts.append(f"The hash grid -> splats conversion includes {to_splats['render_seconds']:.0f} s of rendering "
                     f"the teacher's views, and its splats match the teacher to {to_splats['psnr_vs_teacher']:.1f} dB "
                     "on held-out views.")
    renders = [run["render_seconds"] for name, run in results.items() if name in ("splats_to_field", "round_trip")]
    if renders:
        facts.append(f"Each splats -> hash grid conversion includes {spread(renders)} s of rendering the splats' "
                     "views.")
    if facts:
        lines += ["", " ".join(facts)]
    if results.get("note"):
        lines += ["", results["note"]]
    return lines


def splat_runs(results: dict) -> list[tuple[str, dict]]:
    labels = {"train": "`train --arch gaussians` (random start)",
              "field_to_splats": "`convert` hash grid -> `gaussians`",
              "splats_to_field": "`convert` the trained splats -> `hashgrid`",
              "round_trip": "`convert` the hash grid's splats -> `hashgrid`"}
    return [(label, results[name]) for name, label in labels.items() if name in results]


def generate_section(results: dict) -> list[str]:
    summary = results["summary"]
    rows = [[group["rep"], group["guidance"].upper(), str(group["prompts"]), str(group["steps"]),
             f"{group['guidance_scale']:g}", number(group["wall_seconds"], 0), number(group["fidelity"], 3),
             number(group["shape"], 3), number(group["colour"], 3), number(group["saturation"], 3),
             group.get("measured", results["measured"])["commit"]] for group in summary]
    lines = ["## Text to 3D: `fieldkit generate`", "",
             f"{measured_line(measured_of(*summary, default=results['measured']))}, on an "
             f"{machine(results)} per run, with the shipped prior (`python bench/generate.py`). Every "
             "single-object prompt of the built-in vocabulary at `fieldkit generate`'s defaults; fidelity is the "
             "built-in evaluator's score of 8 turntable views (shape and colour both right), saturation the mean "
             "HSV saturation of the pixels the object covers; seconds are wall time.", "",
             table(["rep", "guidance", "prompts", "steps", "CFG", "seconds", "fidelity", "shape", "colour",
                    "foreground saturation", "commit"], rows, right={2, 3, 4, 5, 6, 7, 8, 9})]
    if results.get("summary_note"):
        lines += ["", results["summary_note"]]
    saturation = results.get("saturation_bsd_minus_sds", {})
    if saturation:
        parts = [f"{rep} {entry['mean_bsd_minus_sds']:+.3f} (standard error {entry['standard_error']:.3f}, "
                 f"{entry['prompts']} prompts)" for rep, entry in saturation.items()]
        lines += ["", "Saturation of BSD minus SDS at the same CFG, mean over prompts: " + "; ".join(parts) + "."]
    weak = {}
    for row in results["runs"]:
        if row.get("fidelity") is not None and row["fidelity"] < 0.75:
            weak.setdefault(f"{row['rep']} {row['guidance'].upper()}", []).append(f"{row['prompt']} {row['fidelity']:.2f}")
    if weak:
        lines += ["", "Prompts below 0.75 fidelity: " + "; ".join(f"{group}: {', '.join(items)}"
                                                                   for group, items in weak.items()) + "."]
    cube = next((row for row in results["runs"] if row["prompt"] == "red cube" and row["rep"] == "gaussians"
                 and row["guidance"] == "sds"), None)
    if cube:
        lines += ["", f"`fieldkit generate \"a red cube\"` at its defaults (splats, SDS): {cube['steps']} steps in "
                      f"{cube['seconds']:.0f} s of optimisation, {cube['wall_seconds']:.0f} s wall time with its "
                      f"outputs, final loss {cube['final_loss']:.0f}, fidelity {cube['fidelity']:.2f}, "
                      f"{cube['splats']:,} splats."]
    lines += geometry_lines(results)
    for row in results.get("sd21_base_step", []):
        lines += ["", f"One {row['guidance'].upper()} step at Stable-Diffusion-2.1-base size ({row['resolution']} px, "
                      f"random weights built from its configs, on {row['device']}: 64 px splat render resized, VAE "
                      f"encode with gradient, two UNet passes) takes {row['seconds_per_step']:.1f} s. "
                      f"{measured_line([row.get('measured', results['measured'])])}."]
    return lines


GEOMETRY_SECTIONS = {"sweep": "every single-object prompt", "guidance_subset": "each guidance on a few prompts"}


def with_interval(value: float, half_width: float | None) -> str:
    return number(value, 3) if half_width is None else f"{value:.3f} ± {half_width:.3f}"


def judged(section: dict) -> str:
    """When the judge scored a section's saved assets after the section was measured."""
    return f" (judged {when(section['judged'])} from the saved assets)" if "judged" in section else ""


def geometry_lines(results: dict) -> list[str]:
    """The geometry tables (`fieldkit.generate.geometry`): the initial splat ball against each guidance."""
    lines = []
    for name, what in GEOMETRY_SECTIONS.items():
        section = results.get(name)
        if not section:
            continue
        rows = [[group["rep"], "initial ball (baseline)" if group["guidance"] == "initial" else group["guidance"].upper(),
                 str(group["prompts"]), str(group["steps"]), number(group["wall_seconds"], 0),
                 number(group.get("max_wall_seconds"), 0), with_interval(group["iou"], group.get("iou_interval")),
                 number(group["min_iou"], 3), f"{group['stray']:.1%}", number(group["depth_error"], 3),
                 number(group["colour_distance"], 3), with_interval(group["fidelity"], group.get("fidelity_interval")),
                 with_interval(group.get("judge"), group.get("judge_interval")),
                 str(group.get("seeds", 1)), (group.get("measured") or section["measured"])["commit"]]
                for group in section["summary"]]
        loads = [row["load"][0] for row in section["runs"] if "load" in row]
        load = f" The machine is shared: the load average was {min(loads):.1f}-{max(loads):.1f} during the runs." \
            if loads else ""
        prompts = list(dict.fromkeys(row["prompt"] for row in section["runs"]))
        if len(prompts) < 36:
            what += f" ({', '.join(prompts)})"
        lines += ["", f"Geometry against the ground truth, {what}. "
                      f"{measured_line(measured_of(*section['summary'], default=section['measured']))}, on an "
                      f"{machine(section, batch_threads(section))} per run (`python bench/generate.py --baseline`). The asset and the prompt's "
                      "true shape are rendered over 24 azimuths at elevations 0, 20, 40, 60 and 80 after fitting the "
                      "asset's scale and turn; IoU is the silhouettes' (mean over views; min: the worst prompt), "
                      "stray the asset's coverage outside the true silhouette as a share of the frame, depth the "
                      "mean error on the overlap (world units; objects are about 1 tall), colour the RGB distance "
                      "of the mean foreground colour to the shaded palette colour. Seconds are wall time per prompt "
                      "(mean, max), metrics included. Fidelity is the built-in evaluator's; judge is the share of "
                      "96 views (elevations -10 to 65, grey and dark backgrounds) that the judge names as the prompt"
                      f"{judged(section)}. With several seeds, ± is the half-width of the 95% t-interval "
                      f"of the mean over seeds.{load}", "",
                  table(["rep", "guidance", "prompts", "steps", "seconds", "max s", "IoU", "min IoU", "stray",
                         "depth", "colour", "fidelity", "judge", "seeds", "commit"], rows, right=set(range(2, 14)))]
    return lines


def prior_section(results: dict) -> list[str]:
    scales = [(name, results[name]) for name in results if isinstance(results[name], dict) and "per_shape" in results[name]]
    shapes = list(scales[0][1]["per_shape"])
    rows = []
    for name, summary in scales:
        label = f"{summary['guidance_scale']:g}" + (" (default)" if summary["guidance_scale"] == results["guidance_scale"]
                                                   else " (no guidance: baseline)" if summary["guidance_scale"] == 1
                                                   else "")
        rows.append([label, f"{summary['fidelity']:.1%}"] + [f"{summary['per_shape'][shape]:.2f}" for shape in shapes]
                    + [f"{min(row['fidelity'] for row in summary['prompts']):.2f}"])
    default = next(summary for _, summary in scales if summary["guidance_scale"] == results["guidance_scale"])
    return ["## The built-in prior: `fieldkit prior`", "",
            f"{measured_line([results['measured']])}, on an {machine(results, results.get('threads'))} "
            f"(`python bench/prior.py`). {results['samples_per_prompt']} samples for each single-object prompt, "
            "DDIM 30 steps, each named by the built-in evaluator; a sample is right when its shape and colour both "
            "are.", "",
            table(["guidance scale", "samples right", *shapes, "worst prompt"], rows,
                  right=set(range(1, len(shapes) + 3))), "",
            "Colour accuracy at the default scale: " + ", ".join(f"{colour} {value:.2f}" for colour, value in
                                                                  default["per_colour"].items()) + ". "
            f"`load_prior()` takes {results['load_seconds']:.1f} s (`from_pretrained` of all four parts, in a fresh "
            "interpreter)."]


def viewer_section(results: dict) -> list[str]:
    rows = [["first preview frame, server side", f"{results['first_preview_frame_s']:.2f} s"],
            [f"preview frame ({results['preview_rows']} rows), median", f"{results['preview_frame_median_s']:.2f} s"],
            [f"full frame ({results['full_rows']} rows), median", f"{results['full_frame_median_s']:.2f} s"]]
    if "browser_connect_to_first_frame_s" in results:
        rows += [["browser connected -> first frame shown", f"{results['browser_connect_to_first_frame_s']:.2f} s"],
                 ["page opened -> first frame shown", f"{results['browser_page_open_to_first_frame_s']:.2f} s"]]
    return ["## The viewer: `fieldkit view`", "",
            f"{measured_line([results['measured']])}, on an {machine(results, results.get('threads'))} "
            f"(`python bench/viewer.py`). A {results['architecture']} field of {results['parameters']:,} parameters "
            f"with {results['occupied_voxels']:,} occupied voxels, seen from the viewer's initial camera in headless "
            "chromium.", "",
            table(["figure", "seconds"], rows, right={1})]


def splat_note(rows: list[dict]) -> str:
    """What the splat rows time, where the results have them."""
    repeats = [row["reference_repeats"] for row in rows if row["op"] == "splats" and "reference_repeats" in row]
    return (" The splat rows render random splats 1 to 4 px across (sigma) into one camera, from projection to "
            f"the gradients of every splat parameter; their torch path is timed best of {repeats[0]}.") if repeats else ""


def kernels_section(results: dict) -> list[str]:
    rows = [[row["op"], row["size"], number(row["native_seconds"], 4), number(row["reference_seconds"], 4),
             f"{row['speedup']:.1f}x", f"{row['max_difference']:.0e}"] for row in results["ops"]]
    load = results["load_average"]
    return ["## Native kernels", "",
            f"{measured_line([results['measured']])}, on an {machine(results)} (`OMP_NUM_THREADS=2 python "
            "bench/native_kernels.py`). Forward + backward of each op's native CPU kernel (cuda/, built on first use, "
            "see [kernels](kernels.md)) against its torch reference in the same run, best of "
            f"{results['repeats']} after a warm-up (ray marching has no gradient: its places come from the occupancy "
            "grid, so it runs forward only, sample generation and early termination); \"difference\" is the largest difference between the two paths' "
            "outputs and gradients, relative to the reference's largest magnitude. The hash encoding is "
            "`HashGridConfig`'s default grid (16 levels, 2 features, 2^17 rows per level). The machine is shared: "
            f"its load average was {load['before'][0]:.1f} before the run and {load['after'][0]:.1f} after. The extension built in {results['build_seconds']:.0f} s on "
            f"first use.{splat_note(results['ops'])}", "",
            table(["op", "size", "native (s)", "torch (s)", "speedup", "difference"], rows, right={2, 3, 4, 5})]


def mesh_section(results: dict) -> list[str]:
    conversion, geometry, teacher = results["conversion"], results["geometry"], results["teacher"]
    steps = ("teacher_render_seconds", "extraction_seconds", "unwrap_seconds", "bake_seconds", "refine_seconds")
    time_rows = [[name.removesuffix("_seconds").replace("_", " "), number(conversion.get(name), 0)] for name in steps]
    time_rows.append(["total", number(conversion["seconds"], 0)])
    quality_rows = [["teacher (hash grid)", number(teacher["psnr_test"]), "-", "-"],
                    ["baked mesh", number(conversion["psnr_test_before"]), number(conversion["psnr_vs_teacher_before"]),
                     number(geometry["before"]["chamfer"], 4)],
                    ["refined mesh", number(conversion["psnr_test"]), number(conversion["psnr_vs_teacher"]),
                     number(geometry["after"]["chamfer"], 4)]]
    lines = ["## Meshes: `fieldkit convert --to mesh`", "",
             f"{measured_line([results['measured']])}, on an {machine(results)}, scene `{results['scene']}` "
             f"(`python bench/mesh.py`): a hash-grid teacher ({teacher.get('train_steps') or '?'} training steps) "
             f"extracted, unwrapped, baked and refined at the command's defaults ({conversion['faces']:,} faces, "
             f"{conversion['texture_size'][0]} px texture, {conversion['steps']} refinement steps). Test PSNR over all "
             "test views; Chamfer distance (scene units, the mean of both directions) to the scene's true surface. "
             "Why the defaults are what they are: [mesh](mesh.md).", "",
             table(["model", "test PSNR (dB)", "PSNR vs teacher (dB)", "Chamfer"], quality_rows, right={1, 2, 3}), "",
             table(["stage", "seconds"], time_rows, right={1})]
    trip = results.get("round_trip")
    if trip:
        lines += ["", f"Round trip: the refined mesh taught a hash grid ({trip['hashgrid_steps']} steps, test PSNR "
                      f"{number(trip['hashgrid_psnr_test'])} dB), which became a mesh again (test PSNR "
                      f"{number(trip['mesh_psnr_test'])} dB), in {trip['seconds']:.0f} s."]
    if results.get("note"):
        lines += ["", results["note"]]
    return lines


def batch_rows(results: dict) -> list[list[str]]:
    return [[str(run["workers"]), f"{run['done']}/{run['jobs']}", number(run["wall_seconds"], 0),
             number(run["job_seconds_mean"], 0), f"{run['speedup']:.2f}x"] for run in results["runs"]]


def batch_sentence(results: dict) -> str:
    """The sweep's wall time with one worker and with the most, in one sentence."""
    first, last = results["runs"][0], results["runs"][-1]
    return (f"The {results['prompts']}-prompt `generate` sweep (`python bench/batch.py`) takes "
            f"{first['wall_seconds'] / 60:.0f} min with {first['workers']} worker and {last['wall_seconds'] / 60:.0f} min "
            f"with {last['workers']} ({last['speedup']:.2f}x) on a {results['machine']['cpus']}-core CPU; "
            f"{measured_line([results['measured']]).lower()}.")


def batch_section(results: dict) -> list[str]:
    return ["## Batches: `fieldkit batch`", "",
            f"{measured_line([results['measured']])}, on a {results['machine']['cpus']}-core CPU, torch "
            f"{results['machine']['torch']} (`python bench/batch.py --workers 1 2`): every single-object prompt of "
            "the built-in prior as a default `fieldkit generate` job, from empty directories, one worker (one job "
            "at a time, on all the cores) against more (a local Ray, one core per job). \"job s\" is the mean "
            "time a job took inside its worker.", "",
            table(["workers", "done", "wall (s)", "job s", "speedup"], batch_rows(results), right={1, 2, 3, 4})] + \
        (["", results["note"]] if results.get("note") else [])


def largest_of_each_op(rows: list[dict]) -> list[dict]:
    """The row of each op at its largest size (the README's short table; benchmarks.md has all)."""
    return [max((row for row in rows if row["op"] == op), key=lambda row: row["elements"])
            for op in dict.fromkeys(row["op"] for row in rows)]


def benchmarks_page() -> str:
    train, convert, splats = load("train"), load("convert"), load("splats")
    generate, prior, viewer = load("generate"), load("prior"), load("viewer")
    kernels = load("kernels")
    sections = [
        ["# Benchmarks", "",
         "<!-- written by bench/report.py from bench/results/*.json: edit those, then run "
         "`python bench/report.py` -->", "",
         "Every figure here is read from `bench/results/*.json`, which the scripts in `bench/` write. Each table "
         "gives the date and the commit its figures were measured on; a figure measured before a later change of "
         "defaults describes the code of its commit. The reference machine is a 2-core x86_64 CPU; timings vary "
         "by about 20% between runs of the same command on it, so compare seconds within one table. Why the "
         "defaults are what they are: [convert](convert.md), [train](train.md), [generate](generate.md), "
         "[prior](prior.md), [viewer](viewer.md), [mesh](mesh.md)."],
        train_section(train), headline_section(convert) + matrix_section(convert), splats_section(splats),
        generate_section(generate), prior_section(prior), viewer_section(viewer),
        kernels_section(kernels)]
    if (RESULTS / "mesh.json").exists():  # until bench/mesh.py has run, the page has no mesh section
        sections.insert(4, mesh_section(load("mesh")))
    if (RESULTS / "batch.json").exists():
        sections.append(batch_section(load("batch")))
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


# -- README blocks -------------------------------------------------------------------------

def readme_blocks() -> dict[str, str]:
    """The README's tables, one per command, each led by a caption with its date and commit."""
    train, convert, splats, generate, viewer, kernels = (load(name) for name in (
        "train", "convert", "splats", "generate", "viewer", "kernels"))

    def block(title: str, caption: str, header: list[str], rows: list[list[str]], right: set[int]) -> str:
        return f"{title}. {caption}\n\n{table(header, rows, right)}"

    def since(*items: dict, default: dict) -> str:
        return measured_line(measured_of(*items, default=default))

    blocks = {}
    cube = next(row for row in generate["sweep"]["runs"] if row["prompt"] == "red cube" and row["rep"] == "gaussians"
                and row["guidance"] == "sds" and row["seed"] == 0)
    blocks["quickstart-generate"] = "\n".join([
        "```",
        f"{cube['prompt']!r}: {cube['steps']} steps in {cube['seconds']:.0f} s, final loss {cube['final_loss']:.4g}, "
        f"prompt fidelity {cube['fidelity']:.3f}, judge {cube['judge']:.3f}; wrote runs/red-cube",
        "fieldkit view: open http://127.0.0.1:8080 in a browser (Ctrl-C stops)",
        "```",
        f"Figures {since(cube, default=generate['measured']).lower()} (`bench/results/generate.json`)."])
    hashgrid = next(row for row in train["runs"] if row["scene"] == "tabletop" and row["architecture"] == "hashgrid")
    student = next(row for row in convert["matrix"] if (row["teacher"], row["student"]) == ("hashgrid", "tensorf-vm"))
    blocks["quickstart-convert"] = "\n".join([
        "```",
        f"test PSNR {hashgrid['psnr_test']:.2f} dB, SSIM {hashgrid['ssim_test']:.3f} after {hashgrid['steps']} steps "
        f"in {hashgrid['seconds']:.0f} s",
        "wrote runs/tabletop-hashgrid/field.safetensors and runs/tabletop-hashgrid/metrics.json",
        f"PSNR vs teacher {student['psnr_vs_teacher']:.2f} dB, test PSNR {student['psnr_test']:.2f} dB after "
        f"{student['steps']} steps in {student['seconds']:.0f} s",
        "wrote runs/vm-from-hashgrid/field.safetensors and runs/vm-from-hashgrid/metrics.json",
        "```",
        f"Figures {since(hashgrid, default=train['measured']).lower()} and "
        f"{since(student, default=convert['measured'])[len('Measured '):]} (`bench/results/train.json`, "
        "`convert.json`)."])
    headline, matrix = convert["headline"], convert["matrix"]
    chosen = [(label, run) for (label, run), name in zip(headline_rows(headline), headline["runs"])
              if name == "scratch" or name.startswith("distilled_from_") or name.endswith("_in_a_tenth")]
    gaps = [row["psnr_test"] - row["teacher_psnr_test"] for row in matrix]
    within = sum(gap >= -(MLP_TOLERANCE if row["student"] == "mlp" else TOLERANCE) for gap, row in zip(gaps, matrix))
    blocks["convert"] = block(
        "**`convert`**, PVD's headline: an MLP trained from scratch against the same MLP distilled from a "
        "tensorf-vm teacher",
        f"{since(headline, default=convert['measured'])}; {machine(convert)}. Every architecture into every "
        f"other: {within} of {len(matrix)} pairs within 1 dB of the teacher's test PSNR (1.5 dB into an MLP), mean "
        f"gap {sum(gaps) / len(gaps):+.2f} dB ({since(*matrix, default=convert['measured'])[len('Measured '):]}).",
        ["run", "seconds", "test PSNR (dB)", f"seconds to {headline['target_psnr']:.2f} dB", "speedup"],
        [[label, number(run["seconds"], 0), number(run["psnr_test"]),
          number(run["seconds_to_scratch_psnr"], 0, "not reached"), speedup(run)] for label, run in chosen],
        {1, 2, 3, 4})
    runs = [row for row in train["runs"] if row["scene"] == "tabletop" or row["scene"] == "carousel"
            and row["architecture"] == "hashgrid"]
    cpu_notes = optimisation_cpu_notes(runs)
    blocks["train"] = block(
        "**`train`**, fields on `tabletop` (128 px) and `carousel` (200 px, a real capture's size)",
        f"{since(*runs, default=train['measured'])}; {machine(train)}; `python bench/train.py --scenes carousel "
        "--archs hashgrid`. Seconds are optimisation time on a shared machine" +
        (f"; at high load, CPU seconds: {cpu_notes}." if cpu_notes else "."),
        ["architecture", "scene", "steps", "seconds", "test PSNR (dB)", "SSIM"],
        [[f"`{row['architecture']}`", row["scene"], str(row["steps"]), number(row["seconds"], 0),
          number(row["psnr_test"]), number(row["ssim_test"], 3)] for row in runs], {2, 3, 4, 5})
    labelled = splat_runs(splats)
    speedups = [row["speedup"] for row in splats["rasterizer"]]
    blocks["splats"] = block(
        "**Splats**, trained and converted",
        f"{since(*(run for _, run in labelled), default=splats['measured'])}; {machine(splats)}. The rasterizer is "
        f"{min(speedups):.1f}-{max(speedups):.1f}x faster than 16 px tiles in torch.",
        ["run", "seconds", "test PSNR (dB)", "gap to teacher (dB)"],
        [[label, number(run["seconds"], 0), number(run["psnr_test"]),
          "-" if run.get("teacher_psnr_test") is None else signed(run["psnr_test"] - run["teacher_psnr_test"])]
         for label, run in labelled], {1, 2, 3})
    sweep = generate["sweep"]
    blocks["generate"] = block(
        "**`generate`** on the single-object prompts of the built-in prior, against their ground truth",
        f"{since(*sweep['summary'], default=sweep['measured'])}; {machine(sweep, batch_threads(sweep))} per run. IoU: silhouettes over "
        "elevations 0-80; stray: coverage outside the true silhouette; judge: share of views from elevations -10 "
        "to 65 on grey that a classifier the prior never shared a renderer with names as the prompt. ± is the "
        "95% interval over seeds; seconds are wall time per run on a machine shared with other work "
        "(details: [docs/generate.md](docs/generate.md))",
        ["rep", "guidance", "prompts", "seeds", "seconds", "IoU", "stray", "judge"],
        [[group["rep"], "initial ball" if group["guidance"] == "initial" else group["guidance"].upper(),
          str(group["prompts"]), str(group["seeds"]), number(group["wall_seconds"], 0),
          with_interval(group["iou"], group.get("iou_interval")), f"{group['stray']:.1%}",
          with_interval(group.get("judge"), group.get("judge_interval"))]
         for group in sweep["summary"]], {2, 3, 4, 5, 6, 7})
    rows = [["first frame in the browser", f"{viewer['browser_connect_to_first_frame_s']:.2f}"]] \
        if "browser_connect_to_first_frame_s" in viewer else []
    rows += [[f"preview frame ({viewer['preview_rows']} rows)", f"{viewer['preview_frame_median_s']:.2f}"],
             [f"full frame ({viewer['full_rows']} rows)", f"{viewer['full_frame_median_s']:.2f}"]]
    blocks["viewer"] = block(
        f"**`view`**, a {viewer['architecture']} field of {viewer['parameters'] / 1e6:.1f}M parameters and "
        f"{viewer['occupied_voxels']:,} occupied voxels",
        f"{since(viewer, default=viewer['measured'])}; {machine(viewer, viewer.get('threads'))}.",
        ["figure", "seconds"], rows, {1})
    blocks["kernels"] = block(
        "**Native kernels** (`cuda/`, built on first use), forward + backward against the torch reference",
        f"{since(kernels, default=kernels['measured'])}; {machine(kernels)}, a shared machine (load average "
        f"{kernels['load_average']['before'][0]:.0f}).",
        ["op", "size", "native (s)", "torch (s)", "speedup"],
        [[row["op"], row["size"], number(row["native_seconds"], 3), number(row["reference_seconds"], 3),
          f"{row['speedup']:.1f}x"] for row in largest_of_each_op(kernels["ops"])], {2, 3, 4})
    if (RESULTS / "batch.json").exists():
        blocks["batch"] = batch_sentence(load("batch"))
    return blocks


BLOCK = re.compile(r"(<!-- bench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


def readme_with_blocks(text: str, blocks: dict[str, str]) -> str:
    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in blocks:
            raise SystemExit(f"README.md has a block bench:{name}, which bench/report.py does not write; "
                             f"known blocks: {', '.join(blocks)}")
        return match.group(1) + blocks[name] + "\n" + match.group(4)

    return BLOCK.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/benchmarks.md or README.md is stale")
    args = parser.parse_args()
    wanted = {DOCS: benchmarks_page(), README: readme_with_blocks(README.read_text(), readme_blocks())}
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date with bench/results/*.json: run python bench/report.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
