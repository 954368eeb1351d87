"""A CPU-side check that a run keeps every tensor on its model's device.

On a CPU-only machine every tensor is on the CPU, so a tensor that would stay behind when the
model runs on CUDA cannot be told apart by its device. The guard gives it another mark instead.
Inside `keeps_to_model_device()`:
- a tensor that fieldkit's own code creates with a factory (torch.zeros, torch.rand, torch.tensor,
  ...) and no `device=` is marked as left on the default device, with the line that made it; so is
  the result of an op whose tensor inputs are all marked, and of `.cpu()`;
- `.to(device)` / `.to(tensor)` is a deliberate move: its result follows the target, and a factory
  given `device=x.device` follows x (the device objects read off marked tensors are remembered);
- an op that meets a marked tensor with an unmarked one (the model's parameters, its inputs,
  anything made with `device=`) is what raises "Expected all tensors to be on the same device" on
  CUDA: the guard records it. A marked 0-dim tensor is let through, as CUDA lets CPU scalars in;
- a generator made without `device=` in fieldkit's code lives on the default device: a draw from
  it is recorded, and so is a draw from any generator without `device=` (on CUDA it would land on
  the CPU, or fail against a CUDA generator).
On leaving the block, every recorded mix fails the test with the op's line and the stray tensor's.
"""
from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._pytree import tree_flatten

REPO = Path(__file__).resolve().parents[1]
CODE_ROOTS = (REPO / "fieldkit", REPO / "scenes", REPO / "viewer")
TORCH_ROOT = Path(torch.__file__).resolve().parent
MARK = "_fieldkit_default_device_site"
FACTORIES = _device_constructors()
FOLLOW_INPUT = {torch.as_tensor, torch.asarray}
"""Factories that keep a tensor argument's device."""
MOVES = {torch.Tensor.to}
"""Deliberate moves: the result follows the target, not the input."""
_REAL_GENERATOR = torch.Generator


@functools.lru_cache(maxsize=4096)
def _under(filename: str, roots: tuple[Path, ...]) -> bool:
    path = Path(filename).resolve()
    return any(path == root or path.is_relative_to(root) for root in roots)


def _site(frame) -> str:
    path = Path(frame.f_code.co_filename)
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    return f"{shown}:{frame.f_lineno} ({frame.f_code.co_name})"


class DeviceGuard(TorchFunctionMode):
    def __init__(self, roots: tuple[Path, ...], armed: bool):
        super().__init__()
        self.roots = tuple(root.resolve() for root in roots)
        self.armed = armed
        # `device=x.device` follows x: the device objects read off marked tensors, by id (kept alive)
        self.marked_devices: dict[int, tuple[torch.device, str]] = {}
        self.mixes: dict[tuple[str, str], str] = {}

    # -- where a call comes from ----------------------------------------------------------
    def _caller(self):
        """The frame that called the torch function (past torch's own dispatch and this file)."""
        frame = sys._getframe(2)
        while frame is not None and (frame.f_code.co_filename == __file__
                                     or frame.f_code.co_filename.endswith(("torch/overrides.py", "torch/utils/_device.py"))):
            frame = frame.f_back
        return frame

    def guarded(self, frame) -> bool:
        return frame is not None and _under(frame.f_code.co_filename, self.roots)

    def _nearest_guarded_site(self) -> str:
        """The innermost line of guarded code on the stack (where the mix happens, in fieldkit's terms)."""
        frame = self._caller()
        while frame is not None and not self.guarded(frame):
            frame = frame.f_back
        return _site(frame) if frame is not None else "?"

    def record(self, what: str, origin: str) -> None:
        self.mixes.setdefault((self._nearest_guarded_site(), origin), what)

    # -- the mode ------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [value for value in tree_flatten((args, kwargs))[0] if isinstance(value, torch.Tensor)]
        if func in FACTORIES and not (func in FOLLOW_INPUT and inputs):
            return self._factory(func, args, kwargs)
        marked = [tensor for tensor in inputs if hasattr(tensor, MARK)]
        result = func(*args, **kwargs)
        if getattr(func, "__self__", None) is torch.Tensor.device:  # reading `.device`
            if marked:
                self.marked_devices[id(result)] = (result, getattr(marked[0], MARK))
            return result
        if func in MOVES and _target(args[1:], kwargs) is not None:
            target = _target(args[1:], kwargs)  # a move follows its target: a device, or a tensor's
            if self.device_mark(target) is not None:
                _mark(result, self.device_mark(target))
            elif hasattr(result, MARK):
                # on the CPU a move to the CPU returns the tensor itself: an alias of it is what moved,
                # and the tensor that stayed keeps its mark
                return result.view_as(result)
            return result
        stray = [tensor for tensor in marked if tensor.dim() > 0]
        unmarked = [tensor for tensor in inputs if not hasattr(tensor, MARK)]
        if stray and unmarked:
            self.record(f"{getattr(func, '__name__', func)} of a tensor left on the default device with the "
                        "model's", getattr(stray[0], MARK))
        elif marked and not unmarked or func is torch.Tensor.cpu:
            _mark(result, getattr(marked[0], MARK) if marked else self._nearest_guarded_site())
        return result

    def _factory(self, func, args, kwargs):
        frame = self._caller()
        generator = kwargs.get("generator")
        if generator is not None and self.guarded(frame):
            if getattr(generator, MARK, None):
                self.record(f"{func.__name__} from a generator made without device=", getattr(generator, MARK))
            elif kwargs.get("device") is None:
                self.record(f"{func.__name__} from a device generator into a default-device tensor", _site(frame))
        result = func(*args, **kwargs)
        if self.device_mark(kwargs.get("device")) is not None:
            _mark(result, self.device_mark(kwargs.get("device")))
        elif self.armed and kwargs.get("device") is None and self.guarded(frame):
            _mark(result, _site(frame))
        return result

    def device_mark(self, target) -> str | None:
        """The mark that a tensor, or a device read off a tensor, carries (None: the model's device)."""
        if isinstance(target, torch.Tensor):
            return getattr(target, MARK, None)
        entry = self.marked_devices.get(id(target))
        return entry[1] if entry is not None and entry[0] is target else None


def _target(args, kwargs):
    """Where `.to(...)` / `.cuda()` sends a tensor: a device, a tensor whose device it takes, or None
    (a dtype change only)."""
    for target in [*args, kwargs.get("device")]:
        if isinstance(target, (torch.device, torch.Tensor, str, int)) and not isinstance(target, bool):
            return target
    return None


def _mark(result, site: str) -> None:
    for value in tree_flatten(result)[0]:
        if isinstance(value, torch.Tensor):
            with contextlib.suppress(AttributeError, RuntimeError):
                setattr(value, MARK, site)


def _tracking_generator(guard: DeviceGuard):
    """torch.Generator, marking those that guarded code makes without a device."""

    class TrackedGenerator(_REAL_GENERATOR):
        def __new__(cls, device=None):
            generator = super().__new__(cls) if device is None else super().__new__(cls, device)
            caller = sys._getframe(1)
            if device is None and guard.guarded(caller):
                setattr(generator, MARK, _site(caller))
            return generator

    return TrackedGenerator


def _arming(guard: DeviceGuard, method):
    def armed(*args, **kwargs):
        guard.armed = True
        return method(*args, **kwargs)

    return armed


@contextlib.contextmanager
def keeps_to_model_device(roots: tuple[Path, ...] = CODE_ROOTS, arm_at: tuple[type, str] | None = None):
    """Fails (AssertionError) at exit if code under `roots` mixed default-device tensors with the model's.

    `arm_at` (a class and a method name): tensors are marked from the first call of that method on,
    so that a run's construction (data read on the CPU, a model built there and then moved) is not
    held against it; generators are checked throughout."""
    guard = DeviceGuard(roots, armed=arm_at is None)
    torch.Generator = _tracking_generator(guard)
    patch = pytest.MonkeyPatch()
    if arm_at is not None:
        patch.setattr(arm_at[0], arm_at[1], _arming(guard, getattr(arm_at[0], arm_at[1])))
    try:
        with guard:
            yield guard
    finally:
        torch.Generator = _REAL_GENERATOR
        patch.undo()
    if guard.mixes:
        lines = [f"  {site}: {what} (made at {origin})" for (site, origin), what in sorted(guard.mixes.items())]
        raise AssertionError("tensors left on the default device met the model's:\n" + "\n".join(lines))
