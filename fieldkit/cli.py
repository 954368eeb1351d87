"""The `fieldkit` command. Each verb is a small function; options of dataclass configs are
generated from their fields, with each field's docstring as help."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from fieldkit.batch.commands import add_verbs as add_batch_verb
from fieldkit.devices import add_device_option, resolve_device
from fieldkit.errors import FieldkitError
from fieldkit.options import OneLineParser, add_dataclass_options, dataclass_from_args, number
from fieldkit.generate.commands import add_verbs as add_generate_verb
from fieldkit.layers.commands import add_verbs as add_layer_verbs
from fieldkit.prior.commands import add_verbs as add_prior_verbs
from fieldkit.viewer.commands import add_live_options, check_live_address, live_view
from fieldkit.viewer.commands import add_verbs as add_view_verb

EXIT_INTERRUPTED = 130


def _parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator:
            raise FieldkitError(f"--set expects NAME=VALUE, got '{pair}'")
        overrides[name.strip().replace("-", "_")] = value.strip()
    return overrides


def _log(line: str) -> None:
    """A run's notes (what it chose, what it skipped), on stderr beside its progress."""
    print(f"fieldkit: {line}", file=sys.stderr)


# -- verbs ---------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from fieldkit.fitting import TrainConfig
    from fieldkit.train import make_trainer

    check_live_address(args)
    trainer = make_trainer(args.source, args.arch, args.out, dataclass_from_args(TrainConfig, args),
                           _parse_overrides(args.set), resolve_device(args.device))
    if trainer.resuming:
        print(f"resuming the run in {args.out}", file=sys.stderr)
    with live_view(args, trainer, "train"):
        metrics = trainer.run_training()
    print(f"test PSNR {metrics['psnr_test']:.2f} dB, SSIM {metrics['ssim_test']:.3f} "
          f"after {metrics['steps']} steps in {metrics['seconds']:.0f} s")
    print(f"wrote {Path(args.out) / trainer.asset_name} and {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_convert(args) -> int:
    from fieldkit.distill import ConvertConfig, make_converter

    check_live_address(args)
    mesh_config = _mesh_config(args) if args.to == "mesh" else None
    converter = make_converter(args.teacher, args.to, args.out, dataclass_from_args(ConvertConfig, args),
                               _parse_overrides(args.set), log=_log, mesh_config=mesh_config,
                               device=resolve_device(args.device))
    if converter.resuming:
        _log(f"resuming the run in {args.out}")
    with live_view(args, converter, "convert"):
        metrics = converter.run_conversion()
    if args.to == "mesh":
        return _report_mesh(metrics, args.out)
    test = f", test PSNR {metrics['psnr_test']:.2f} dB" if "psnr_test" in metrics else ""
    print(f"PSNR vs teacher {metrics['psnr_vs_teacher']:.2f} dB{test} after {metrics['steps']} steps "
          f"in {metrics['seconds']:.0f} s")
    print(f"wrote {Path(args.out) / converter.asset_name} and {Path(args.out) / 'metrics.json'}")
    return 0


def _mesh_config(args):
    from fieldkit.mesh.config import MeshConfig

    return dataclass_from_args(MeshConfig, args)


def _report_mesh(metrics: dict, out: str) -> int:
    test = f", test PSNR {metrics['psnr_test_before']:.2f} -> {metrics['psnr_test']:.2f} dB" \
        if "psnr_test" in metrics else ""
    print(f"PSNR vs teacher {metrics['psnr_vs_teacher_before']:.2f} -> {metrics['psnr_vs_teacher']:.2f} dB{test} "
          f"({metrics['faces']} faces, {metrics['steps']} refinement steps, {metrics['seconds']:.0f} s)")
    print(f"wrote {Path(out) / 'mesh.glb'}, {Path(out) / 'mesh.obj'} and {Path(out) / 'metrics.json'}")
    return 0


def cmd_refine(args) -> int:
    from fieldkit.distill import ConvertConfig
    from fieldkit.distill.to_mesh import MeshDistiller

    config = ConvertConfig(rig=args.rig, seed=args.seed, checkpoint_seconds=args.checkpoint_seconds)
    refiner = MeshDistiller(args.teacher, args.out, config, _mesh_config(args), mesh_path=args.mesh, log=_log)
    if refiner.resuming:
        _log(f"resuming the run in {args.out}")
    return _report_mesh(refiner.run_conversion(), args.out)


def cmd_render(args) -> int:
    from fieldkit.rendering import render_cameras_file, render_orbit

    device = resolve_device(args.device)
    if args.orbit:
        written = render_orbit(args.asset, args.out, args.orbit, args.resolution, device)
    elif args.cameras:
        written = render_cameras_file(args.asset, args.cameras, args.out, args.downscale, device)
    else:
        raise FieldkitError("say what to render: --cameras TRANSFORMS.json or --orbit N")
    print(f"wrote {len(written)} images to {args.out}")
    return 0


def cmd_info(args) -> int:
    from fieldkit.gaussians import is_splat_file
    from fieldkit.io import describe

    if is_splat_file(args.asset):
        return _splats_info(args)
    header = describe(args.asset)
    if args.json:
        print(json.dumps(header, indent=2))
        return 0
    bounds = header.get("bounds")
    lines = [f"kind          {header.get('kind')}", f"architecture  {header.get('architecture')}",
             f"parameters    {header.get('parameters', 0):,}",
             f"bounds        {bounds[0]} .. {bounds[1]}" if bounds else "bounds        -"]
    if header.get("dataset"):
        lines.append(f"dataset       {header['dataset'].get('name')} ({header['dataset'].get('source')})")
    for name, value in header.get("metrics", {}).items():
        if name in ("architecture", "parameters"):  # already shown above
            continue
        lines.append(f"{name:<13} {value:.4g}" if isinstance(value, float) else f"{name:<13} {value}")
    print("\n".join(lines))
    return 0


def _splats_info(args) -> int:
    from fieldkit.gaussians import load_splats

    summary = load_splats(args.asset).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    bounds = summary["bounds"]
    print("\n".join([f"kind          {summary['kind']}", f"splats        {summary['count']:,}",
                      f"sh degree     {summary['sh_degree']}", f"bounds        {bounds[0]} .. {bounds[1]}"]))
    return 0


def cmd_scenes(args) -> int:
    from fieldkit import scenes

    if args.action == "export":
        if not args.name or not args.out:
            raise FieldkitError("usage: fieldkit scenes export NAME --out DIR")
        path = scenes.export(args.name, args.out, resolution=args.resolution, train_views=args.train_views,
                             test_views=args.test_views, seed=args.seed)
        print(f"wrote {path}")
        return 0
    for index, name in enumerate(scenes.names()):
        print(f"{name:<10} {scenes.describe(name)}{'  (default)' if index == 0 else ''}")
    return 0


def _add_run_options(parser: argparse.ArgumentParser, config_class, set_help: str) -> None:
    """What every resumable verb takes: its run directory, --set overrides and its config's options."""
    parser.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=set_help)
    add_dataclass_options(parser, config_class)
    add_device_option(parser)
    add_live_options(parser)


def build_parser() -> argparse.ArgumentParser:
    from fieldkit.distill import ConvertConfig
    from fieldkit.fields import ARCHITECTURES
    from fieldkit.fitting import TrainConfig
    from fieldkit.mesh.config import MeshConfig

    parser = OneLineParser(prog="fieldkit", description="Convert, generate, train and view 3D fields.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="fit a field to posed images or a built-in scene")
    train.add_argument("source", help="dataset directory, transforms.json, or built-in scene name")
    train.add_argument("--arch", default="hashgrid", help=f"one of: {', '.join(ARCHITECTURES)}, gaussians (default: hashgrid)")
    _add_run_options(train, TrainConfig, "override one architecture setting, e.g. --set log2_table_size=19")
    train.set_defaults(run=cmd_train)

    convert = verbs.add_parser("convert", help="distil a field or splats into another representation (PVD)")
    convert.add_argument("teacher", help="the teacher: a field or splat asset (.safetensors), or a 3DGS .ply")
    convert.add_argument("--to", required=True,
                         help=f"student representation, one of: {', '.join(ARCHITECTURES)}, gaussians, mesh")
    _add_run_options(convert, ConvertConfig, "override one student architecture setting, e.g. --set width=256")
    add_dataclass_options(convert.add_argument_group("mesh student (--to mesh)"), MeshConfig)
    convert.set_defaults(run=cmd_convert)

    refine = verbs.add_parser("refine", help="refine a textured mesh (.glb/.obj) against a teacher's renders")
    refine.add_argument("mesh", help="the mesh to refine: a .glb or .obj with UVs and a texture")
    refine.add_argument("--teacher", required=True, help="what the mesh should look like: a field, splats or mesh")
    refine.add_argument("--out", required=True, help="run directory (rerun the same command to resume)")
    refine.add_argument("--rig", default="auto", help="synthetic cameras: sphere, hemisphere, box or auto "
                        "(as for convert)")
    refine.add_argument("--seed", type=number(int), default=0, help="random seed (default: 0)")
    refine.add_argument("--checkpoint-seconds", type=number(float, 0, above=True), default=30.0,
                        help="seconds between checkpoints (default: 30.0)")
    add_dataclass_options(refine.add_argument_group("refinement (extraction options do not apply)"), MeshConfig)
    refine.set_defaults(run=cmd_refine)

    render = verbs.add_parser("render", help="render an asset from cameras or on a turntable")
    render.add_argument("asset")
    render.add_argument("--cameras", help="a transforms.json / transforms_test.json, or a dataset directory")
    render.add_argument("--orbit", type=number(int), default=0, help="render an N-view turntable instead")
    render.add_argument("--resolution", type=number(int, 1), default=256, help="turntable image size (default: 256)")
    render.add_argument("--downscale", type=number(float, 0, above=True), default=1.0,
                        help="divide the cameras' resolution by this")
    render.add_argument("--out", required=True, help="output directory for PNGs")
    add_device_option(render)
    render.set_defaults(run=cmd_render)

    info = verbs.add_parser("info", help="describe an asset")
    info.add_argument("asset")
    info.add_argument("--json", action="store_true", help="print the whole header as JSON")
    info.set_defaults(run=cmd_info)

    scene = verbs.add_parser("scenes", help="list built-in scenes, or export one as a dataset")
    scene.add_argument("action", nargs="?", choices=["list", "export"], default="list")
    scene.add_argument("name", nargs="?")
    scene.add_argument("--out")
    scene.add_argument("--resolution", type=number(int, 1), default=128)
    scene.add_argument("--train-views", type=number(int, 1), default=100)
    scene.add_argument("--test-views", type=number(int, 1), default=20)
    scene.add_argument("--seed", type=number(int), default=0)
    scene.set_defaults(run=cmd_scenes)
    # verbs whose modules import their heavy libraries only when run, so `fieldkit --help` stays fast
    add_generate_verb(verbs)  # generate
    add_view_verb(verbs)  # view
    add_prior_verbs(verbs)  # prior train|sample|export, eval-prompt
    add_batch_verb(verbs)  # batch
    add_layer_verbs(verbs)  # generate --layer, render of layers, decompose, compose
    parser.set_defaults(parser=parser)  # what batch checks its jobs' command lines with
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings meant for the user (NaN splats dropped, ...) as one line, without source locations."""
    print(f"fieldkit: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        return args.run(args)
    except FieldkitError as error:
        print(f"fieldkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fieldkit: interrupted; no half-written file was left (train and convert: rerun the same command to resume)",
              file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
