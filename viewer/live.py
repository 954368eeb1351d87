"""The live view: the browser viewer on a model that a running job is still optimising.

`fieldkit train --view` and `fieldkit convert --view` use it through `watching`; any other
loop (`fieldkit generate`, a notebook) uses `LiveView` directly::

    from fieldkit.viewer.live import LiveView

    live = LiveView("generate", host="127.0.0.1", port=8080)
    print("view at", live.start(model))       # model: any Renderable (a field, splats, ...)
    for step in range(steps):
        ...                                   # one optimisation step
        live.update(step + 1, {"loss": loss, "psnr": psnr}, model)
    live.close()

`update` is cheap to call every step: it does something at most every `every_seconds`, copies
the model only while a browser is connected, and renders in the viewer's own threads, so the
job never waits for a browser. Browsers connecting, disconnecting or failing never raise
into the job.
"""
from __future__ import annotations

import contextlib
import copy
import sys
import time

import torch

from . import DEFAULT_HOST
from .app import Viewer
from .assets import model_asset
from .panels import add_progress_panel, info_markdown


class LiveView:
    def __init__(self, title: str = "fieldkit", host: str = DEFAULT_HOST, port: int | None = None,
                 every_seconds: float = 3.0):
        """`port` None: 8080, or the next free one; a port given must be free (0: any free port)."""
        self.title, self.host, self.port, self.every_seconds = title, host, port, every_seconds
        self.viewer: Viewer | None = None
        self._last_update = float("-inf")

    def start(self, model) -> str:
        """Serves a copy of `model` (any Renderable: a field, splats, ...); returns the URL to open."""
        self.viewer = Viewer([model_asset(self.title, snapshot(model))], self.host, self.port, self.title)
        self._progress = add_progress_panel(self.viewer.server.gui)
        return self.viewer.url

    def update(self, step: int, figures: dict, model=None) -> None:
        """Shows the step and figures, and `model` as it is now, at most every `every_seconds`."""
        now = time.monotonic()
        if self.viewer is None or now - self._last_update < self.every_seconds:
            return
        self._last_update = now
        self._progress.content = info_markdown({"step": step} | figures)
        if model is not None and self.viewer.server.get_clients():
            asset = model_asset(self.title, snapshot(model))
            self.viewer.replace_model(0, asset.model)
            self.viewer.info_panels[0].content = info_markdown(asset.info)

    def close(self) -> None:
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None


@torch.no_grad()
def snapshot(model):
    """A frozen copy in eval mode: the viewer renders it while the job goes on changing the original."""
    frozen = copy.deepcopy(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
        parameter.grad = None
    return frozen


@contextlib.contextmanager
def watching(run, title: str, host: str = DEFAULT_HOST, port: int | None = None):
    """Shows a ResumableRun's model (train, convert) while the block runs it."""
    live = LiveView(title, host, port)
    print(f"fieldkit: watch the run at {live.start(run.model)}", file=sys.stderr, flush=True)
    run.step_callback = lambda step, figures: live.update(step, figures, run.model)
    try:
        yield live
    finally:
        run.step_callback = None
        live.close()
