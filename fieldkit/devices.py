"""Where a run computes: the `--device` option every verb shares, and the seeded generators that
draw random numbers on the device they feed (a CPU generator cannot fill a CUDA tensor, and
copying its draws over costs a transfer on every step)."""
from __future__ import annotations

import argparse

import torch

from fieldkit.errors import FieldkitError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "where the run computes: auto (CUDA when present, else the CPU), cpu, or cuda (also cuda:N)"


def device_name(text: str) -> str:
    """An option value: auto, cpu, cuda or cuda:N (checked against the machine by `resolve_device`)."""
    kind, _, index = text.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise argparse.ArgumentTypeError(f"choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N), got '{text}'")
    return text


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_name, default="auto", help=DEVICE_HELP)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """auto -> CUDA when this torch sees a GPU, else the CPU; cuda where there is none -> one error line."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no CUDA device visible"
            raise FieldkitError(f"--device {name}: this machine's torch {torch.__version__} has {build}; "
                                "use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FieldkitError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A seeded generator on `device`, so random draws land where the tensors they feed live."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def draws_on(generator: torch.Generator | None) -> torch.device | None:
    """The `device=` to pass beside `generator=`: the generator's own (None: the default device)."""
    return None if generator is None else generator.device


def restore_generator(generator: torch.Generator, state: torch.Tensor, path) -> None:
    """Sets a checkpointed random state; a checkpoint from another device type says so in one line
    (CPU and CUDA generators keep states of different kinds)."""
    try:
        generator.set_state(state)
    except RuntimeError:
        raise FieldkitError(f"{path} was written by a run on another device than {generator.device.type}; "
                            "resume it with the --device it was started with") from None
