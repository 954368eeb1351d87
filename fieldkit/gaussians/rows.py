"""Adding and removing splats while an optimiser trains them.

Every per-splat parameter is replaced by a new tensor with the new rows, and the optimiser's
per-row state (Adam's exp_avg, exp_avg_sq) follows its rows, as gsplat's strategies do: kept
rows keep their moments, new rows start from zero moments. Scalar state (Adam's step) is
shared by the whole tensor and carries over unchanged.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from fieldkit.gaussians.model import PARAMETER_NAMES, Splats


def _replace_rows(splats: Splats, optimizer: torch.optim.Optimizer,
                  rows: Callable[[str, Tensor, bool], Tensor]) -> None:
    """Swaps each parameter for `rows(name, old, is_state)`: the parameter itself, and its state."""
    for name in PARAMETER_NAMES:
        old = getattr(splats, name)
        new = nn.Parameter(rows(name, old.detach(), False))
        for group in optimizer.param_groups:
            group["params"] = [new if parameter is old else parameter for parameter in group["params"]]
        state = optimizer.state.pop(old, None)
        if state is not None:
            optimizer.state[new] = {key: rows(name, value, True) if _per_row(value, len(old)) else value
                                    for key, value in state.items()}
        setattr(splats, name, new)


def _per_row(value, count: int) -> bool:
    return isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == count


@torch.no_grad()
def keep_splats(splats: Splats, optimizer: torch.optim.Optimizer, keep: Tensor) -> None:
    """Keeps the splats where `keep` [N] (bool) is true, with their optimiser state."""
    _replace_rows(splats, optimizer, lambda name, value, is_state: value[keep])


@torch.no_grad()
def append_splats(splats: Splats, optimizer: torch.optim.Optimizer, new: dict[str, Tensor]) -> None:
    """Appends rows (`new` maps every parameter name to [M, ...]); their optimiser state starts at zero."""
    def rows(name: str, value: Tensor, is_state: bool) -> Tensor:
        added = torch.zeros_like(new[name]) if is_state else new[name]
        return torch.cat([value, added.to(value)])

    _replace_rows(splats, optimizer, rows)


@torch.no_grad()
def zero_state(optimizer: torch.optim.Optimizer, parameter: Tensor) -> None:
    """Clears a parameter's per-row moments, so stale momentum does not undo a reset of its values."""
    for value in optimizer.state.get(parameter, {}).values():
        if _per_row(value, len(parameter)):
            value.zero_()
