"""`fieldkit view PATH [PATH ...]`, and the `--view` options of the verbs that run a job."""
from __future__ import annotations

import argparse
import contextlib
import threading

from fieldkit.devices import add_device_option

from . import DEFAULT_HOST, DEFAULT_PORT

PORT_HELP = f"default: {DEFAULT_PORT}, or the next free one; a port given must be free; 0: any free port"


class PortOption(argparse.Action):
    """A port number, checked as it is parsed: a bad one is one error line and exit status 2, as
    `fieldkit`'s other errors (argparse's own type errors print the usage too)."""

    def __call__(self, parser, namespace, value, option_string=None):
        try:
            port = int(value, 10)
        except ValueError:
            port = -1
        if not 0 <= port <= 65535:
            parser.exit(2, f"fieldkit: error: {option_string} {value!r} is not a port number; "
                           "give one of 1-65535, or 0 for any free port\n")
        setattr(namespace, self.dest, port)


def cmd_view(args) -> int:
    from fieldkit.devices import resolve_device

    from .app import Viewer
    from .assets import open_assets
    from .serving import check_address

    check_address(args.host, args.port)  # before the assets load: a bad address is an error at once
    device = resolve_device(args.device)
    assets = [asset for path in args.paths for asset in open_assets(path, args.layer, device)]
    viewer = Viewer(assets, args.host, args.port, title=" | ".join(asset.name for asset in assets))
    print(f"fieldkit view: open {viewer.url} in a browser (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.close()
    return 0


def add_live_options(parser: argparse.ArgumentParser) -> None:
    """`--view`, `--view-host`, `--view-port`: a verb that runs a job shows it live in the viewer."""
    parser.add_argument("--view", action="store_true", help="show the job live in the browser viewer")
    parser.add_argument("--view-host", default=DEFAULT_HOST,
                        help=f"address the live viewer binds to (default: {DEFAULT_HOST}; 0.0.0.0 opens it to the network)")
    parser.add_argument("--view-port", action=PortOption, default=None, help=f"port of the live viewer ({PORT_HELP})")


def check_live_address(args: argparse.Namespace) -> None:
    """With `--view`, a live viewer's bad host or taken port is an error before the job writes anything."""
    if getattr(args, "view", False):
        from .serving import check_address

        check_address(args.view_host, args.view_port)


def live_view(args: argparse.Namespace, run, title: str):
    """A context that shows `run` (a ResumableRun) live when `--view` was given."""
    if not getattr(args, "view", False):
        return contextlib.nullcontext()
    from .live import watching

    return watching(run, title, args.view_host, args.view_port)


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    view = verbs.add_parser("view", help="open assets in the browser viewer (two or more: side by side)",
                            description="Serves a viewer for fields, splats (.ply, splat assets), meshes "
                                        "(.glb, .obj) or run directories, and prints the URL to open.")
    view.add_argument("paths", nargs="+", metavar="PATH", help="an asset, a 3DGS .ply, a .glb/.obj mesh or a run directory")
    view.add_argument("--layer", default=None, metavar="NAME",
                      help="of a layered asset (a directory with layers.json): show only this layer (default: every "
                           "layer in place, each with a checkbox that shows or hides it)")
    view.add_argument("--host", default=DEFAULT_HOST,
                      help=f"address to bind (default: {DEFAULT_HOST}, this machine only; 0.0.0.0 opens it to the network)")
    view.add_argument("--port", action=PortOption, default=None, help=f"port ({PORT_HELP})")
    add_device_option(view)
    view.set_defaults(run=cmd_view)
