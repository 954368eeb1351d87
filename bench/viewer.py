"""How quickly `fieldkit view` shows a field: a hash-grid field (the cpu preset) with about
100k occupied voxels, seen from the viewer's initial camera.

Prints a table and writes bench/results/viewer.json. The browser figure needs Debian's
chromium and playwright; without them only the server-side figures are measured.

    python bench/viewer.py
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # after the thread count is set

from fieldkit.viewer.app import Viewer
from fieldkit.viewer.assets import model_asset
from fieldkit.viewer.browser import CHROMIUM, chromium
from fieldkit.viewer.demo import ball_field
from fieldkit.viewer.scene import View
from provenance import measured

RESULTS = Path(__file__).parent / "results" / "viewer.json"
RADIUS = 0.9  # a ball this big fills 38% of a 64^3 grid: about 100k occupied cells
REPEATS = 3


def initial_view(viewer: Viewer, aspect: float) -> View:
    """The camera a new browser starts with (viser's initial camera, 4:3 like the benchmark's page)."""
    import numpy as np
    import viser.transforms as vtf

    from fieldkit.cameras import look_at

    camera = viewer.server.initial_camera
    c2w = look_at(torch.as_tensor(camera.position, dtype=torch.float32)[None],
                  torch.as_tensor(camera.look_at, dtype=torch.float32))[0]
    wxyz = vtf.SO3.from_matrix(c2w[:3, :3].double().numpy() @ np.diag([1.0, -1.0, -1.0])).wxyz
    return View(tuple(wxyz), tuple(float(v) for v in camera.position), float(camera.fov), aspect)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def browser_first_frame(viewer: Viewer) -> dict:
    """Chromium opens the page; seconds from connection to the first streamed image."""
    with chromium() as browser:
        started = time.perf_counter()
        browser.new_page().goto(viewer.url)
        while not viewer.streams or next(iter(viewer.streams.values())).first_frame_seconds is None:
            time.sleep(0.01)
        page_to_frame = time.perf_counter() - started
        stream = next(iter(viewer.streams.values()))
    return {"browser_connect_to_first_frame_s": stream.first_frame_seconds, "browser_page_open_to_first_frame_s": page_to_frame}


def main() -> None:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    model = ball_field(radius=RADIUS, occupancy_resolution=64, config_overrides={}, steps=200)
    occupied = int(model.grid.occupied.sum())
    viewer = Viewer([model_asset("ball", model)], port=0)
    view = initial_view(viewer, aspect=4 / 3)
    options = viewer.scene.options
    results = {"occupied_voxels": occupied, "architecture": model.architecture,
               "parameters": sum(p.numel() for p in model.parameters()),
               "preview_rows": options.preview, "full_rows": options.resolution, "threads": torch.get_num_threads(),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
               "measured": measured()}
    first = timed(lambda: viewer.scene.render_view(view, options.preview))
    previews = [timed(lambda: viewer.scene.render_view(view, options.preview)) for _ in range(REPEATS)]
    fulls = [timed(lambda: viewer.scene.render_view(view, options.resolution)) for _ in range(REPEATS)]
    results |= {"first_preview_frame_s": first, "preview_frame_median_s": statistics.median(previews),
                "full_frame_median_s": statistics.median(fulls)}
    if CHROMIUM.exists():
        results |= browser_first_frame(viewer)
    viewer.close()
    rows = [(name, f"{value:.3f}" if isinstance(value, float) else str(value)) for name, value in results.items()
            if name != "measured"]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
