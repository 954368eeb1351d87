"""The command line of layered assets: `generate --layer`, `decompose`, `compose`, and
`render` / `view` of a layered directory (each layer apart, or all together)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fieldkit.devices import add_device_option, resolve_device
from fieldkit.errors import FieldkitError
from fieldkit.options import add_dataclass_options, dataclass_from_args, number


def _log(line: str) -> None:
    print(f"fieldkit: {line}", file=sys.stderr)


def _report(metrics: dict, out: Path) -> None:
    composite = metrics["composite"]
    pieces = ", ".join(f"{name} {figures['fidelity']:.2f}" for name, figures in metrics["layers"].items())
    print(f"{composite['prompt']!r}: composite fidelity {composite['fidelity']:.2f}; layers alone: {pieces}; "
          f"wrote {out / 'layers.json'}")


def _prior(args):
    from fieldkit.generate.commands import _quiet_model_loading
    from fieldkit.guidance.prior import load_prior

    _quiet_model_loading()
    return load_prior(args.prior, resolve_device(args.device))


def cmd_generate_layers(args) -> int:
    from fieldkit.generate.config import GenerateConfig
    from fieldkit.layers.pipeline import generate_layers

    if args.prompt is None or args.prompts is not None:
        raise FieldkitError('--layer takes one base prompt ("a red cube"), not --prompts')
    if args.view:
        raise FieldkitError("--view does not show layered runs yet; view the result with `fieldkit view DIR`")
    config = dataclass_from_args(GenerateConfig, args)
    metrics = generate_layers(args.prompt, args.layer, args.out, config, _prior(args), args.refine_base, _log)
    _report(metrics, Path(args.out))
    return 0


def extend_generate(parser: argparse.ArgumentParser) -> None:
    """`generate --layer PROMPT ... [--refine-base]`; without --layer, generate runs as before."""
    plain = parser.get_default("run")
    parser.add_argument("--layer", action="append", default=[], metavar="PROMPT",
                        help='a layer on the base (repeatable, bottom to top), e.g. "a blue sphere on top": each '
                             "layer is generated as splats of its own, complete where the layers below hide it")
    parser.add_argument("--refine-base", action="store_true",
                        help="with --layer: optimise the base again once the layers exist (by default the base "
                             "stays as generated, so removing a layer gives it back unchanged)")

    def run(args) -> int:
        if args.layer:
            return cmd_generate_layers(args)
        if args.refine_base:
            raise FieldkitError("--refine-base applies to layered runs: add --layer PROMPT")
        return plain(args)

    parser.set_defaults(run=run)


def cmd_decompose(args) -> int:
    from fieldkit.generate.config import GenerateConfig
    from fieldkit.layers.decompose import decompose

    config = dataclass_from_args(GenerateConfig, args)
    metrics = decompose(args.asset, args.layer, args.out, config, _prior(args), args.complete, _log)
    _report(metrics, Path(args.out))
    return 0


def cmd_compose(args) -> int:
    from fieldkit.layers.compose import compose

    manifest = compose(args.assets, args.out, args.translate, args.layer, args.without)
    print(f"wrote {manifest}")
    return 0


def extend_render(parser: argparse.ArgumentParser) -> None:
    """`render DIR` of a layered asset: each layer apart and the composite, or `--layer NAME` alone."""
    plain = parser.get_default("run")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="a layered asset (DIR or DIR/layers.json): render this layer alone (default: every "
                             "layer apart and the composite, one folder each)")

    def run(args) -> int:
        from fieldkit.layers.manifest import is_layered

        if not is_layered(args.asset):
            if args.layer:
                raise FieldkitError(f"--layer needs a layered asset (a directory with layers.json); {args.asset} "
                                    "is not one")
            return plain(args)
        from fieldkit.layers.rendering import render_layers

        if not args.orbit:
            raise FieldkitError("a layered asset renders on a turntable: give --orbit N")
        written = render_layers(args.asset, args.out, args.orbit, args.resolution, args.layer)
        print(f"wrote {len(written)} images to {args.out}")
        return 0

    parser.set_defaults(run=run)


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    from fieldkit.generate.config import GenerateConfig

    extend_generate(verbs.choices["generate"])
    extend_render(verbs.choices["render"])

    decompose = verbs.add_parser("decompose", help="split a splat asset or mesh into complete layers",
                                 description="Splits a single-layer asset into one layer a prompt (bottom to top) "
                                             "by colour and position, then completes each layer where the others "
                                             "hid it by score distillation (GALA's direction).")
    decompose.add_argument("asset", help="a 3DGS .ply, .splat, splat asset (.safetensors) or a .glb/.obj mesh")
    decompose.add_argument("--layer", action="append", required=True, metavar="PROMPT",
                           help='one per layer, bottom first, e.g. --layer "a red cube" --layer "a blue sphere"')
    decompose.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    decompose.add_argument("--no-complete", dest="complete", action="store_false",
                           help="only split: skip the score distillation that fills in the hidden parts")
    decompose.add_argument("--prior", default=None,
                           help="diffusers Stable Diffusion directory or hub id (default: the built-in prior)")
    add_device_option(decompose)
    add_dataclass_options(decompose.add_argument_group("completion (as for generate)"), GenerateConfig)
    decompose.set_defaults(run=cmd_decompose)

    compose = verbs.add_parser("compose", help="place a layer from one asset onto another",
                               description="Builds a layered asset: the first asset is the base (its layers, if "
                                           "it is layered), each further asset becomes a layer on it.")
    compose.add_argument("assets", nargs="+", metavar="ASSET",
                         help="splat files (.ply, .splat, .safetensors) or layered directories, base first")
    compose.add_argument("--out", required=True, help="the layered asset's directory")
    compose.add_argument("--translate", nargs=3, type=number(float), action="append", default=[],
                         metavar=("X", "Y", "Z"),
                         help="move the added layer (one --translate per added asset, in order; default: where it "
                              "was in its own asset)")
    compose.add_argument("--layer", action="append", default=[], metavar="NAME",
                         help="take only this layer of a layered asset added (one per added asset, in order)")
    compose.add_argument("--without", action="append", default=[], metavar="NAME",
                         help="leave this layer out (e.g. to get the base back)")
    compose.set_defaults(run=cmd_compose)
