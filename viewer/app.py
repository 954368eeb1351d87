"""The viewer: a viser server showing assets (splats and meshes drawn by the browser, any other
Renderable rendered by fieldkit and streamed), the training cameras, and the panels.

It binds to 127.0.0.1 unless told otherwise, and answers only its own page: requests whose Host
is not its address, and websockets from other web pages, are refused (see serving.py). The only
files it serves over HTTP are viser's own page and scripts (viser refuses `..` in any form);
assets reach the browser as scene messages over the websocket, and no message from the browser
names a file.
"""
from __future__ import annotations

import sys
import threading

import numpy as np
import torch
import trimesh

from fieldkit.gaussians import Splats
from fieldkit.render.occupancy import OccupancyGrid

from . import DEFAULT_HOST
from .assets import ViewAsset
from .native import add_bounds, add_frustums, add_mesh, add_occupied_cells, add_splats
from .panels import add_asset_panels, add_export_panel, add_render_panel
from .scene import ViewScene
from .serving import start_server, stop_server
from .stream import FieldStream
from .training_cameras import training_cameras

FRUSTUM_SCALE = 0.04  # of the scene's diagonal


class Viewer:
    def __init__(self, assets: list[ViewAsset], host: str = DEFAULT_HOST, port: int | None = None,
                 title: str = "fieldkit"):
        """`port` None: DEFAULT_PORT, or the next free one; a port given must be free (0: any free port)."""
        self.scene = ViewScene(assets)
        self.server = start_server(host, port, title)
        self.host = host
        self.streams: dict[int, FieldStream] = {}
        self._streams_lock = threading.Lock()
        try:
            self._build()
        except BaseException:
            stop_server(self.server)
            raise

    def _build(self) -> None:
        self.server.scene.set_up_direction("+z")  # fieldkit's scenes and orbits are z-up, as Blender's
        self.native = {index: self._add_native(index) for index in range(len(self.scene.assets))}
        self.info_panels = add_asset_panels(self.server.gui, self.scene.assets)
        add_render_panel(self.server.gui, self.scene, self.refresh, self._overlay_toggles())
        self._add_layer_toggles()
        add_export_panel(self.server.gui, self.scene)
        self._aim_initial_camera()
        self._label_comparison()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def port(self) -> int:
        return self.server.get_port()

    @property
    def url(self) -> str:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def refresh(self) -> None:
        """Fields look different (options, a newer model): every client renders again."""
        self.scene.changed()
        self._apply_background()
        with self._streams_lock:
            streams = list(self.streams.values())
        for stream in streams:
            stream.refresh()

    def replace_model(self, index: int, model) -> None:
        """Shows a newer model in the place of asset `index` (a live run)."""
        asset = self.scene.assets[index]
        if asset.drawn_by_browser:
            asset.model = model
            self.native[index] = self._add_native(index)  # same name: viser replaces the old splats or mesh
            return
        self.scene.replace_model(index, model)
        self.refresh()

    def close(self) -> None:
        with self._streams_lock:
            streams, self.streams = list(self.streams.values()), {}
        for stream in streams:
            stream.close()
        stop_server(self.server)

    # -- clients -------------------------------------------------------------------------
    def _connect(self, client) -> None:
        if not self.scene.rendered:
            return
        with self._streams_lock:
            self.streams[client.client_id] = FieldStream(client, self.scene)

    def _disconnect(self, client) -> None:
        with self._streams_lock:
            stream = self.streams.pop(client.client_id, None)
        if stream is not None:
            stream.close()

    # -- scene ---------------------------------------------------------------------------
    def _add_native(self, index: int):
        """Splats and meshes go to the browser; anything else is rendered by FieldStream."""
        asset = self.scene.assets[index]
        if isinstance(asset.model, Splats):
            return add_splats(self.server.scene, f"/assets/{index}", asset.model, asset.offset)
        if isinstance(asset.model, trimesh.Trimesh):
            return add_mesh(self.server.scene, f"/assets/{index}", asset.model, asset.offset)
        return None

    def _add_layer_toggles(self) -> None:
        """A checkbox a layer (of a layered asset) that shows or hides it."""
        layers = [index for index, asset in enumerate(self.scene.assets) if asset.layer_of is not None]
        if not layers:
            return
        with self.server.gui.add_folder("Layers"):
            for index in layers:
                checkbox = self.server.gui.add_checkbox(self.scene.assets[index].name, True)
                checkbox.on_update(lambda event, index=index: setattr(self.native[index], "visible", event.target.value))

    def _overlay_toggles(self) -> dict:
        """Checkboxes of the render panel: each shows or hides a group of scene objects, built
        when first shown (reading a dataset's cameras or the occupancy grid takes a moment)."""
        builders = {"training cameras": self._add_training_cameras, "bounds": self._add_bounds}
        if any(isinstance(getattr(asset.model, "grid", None), OccupancyGrid) for asset in self.scene.assets):
            builders["occupancy grid"] = self._add_occupied_cells
        handles: dict[str, list] = {}

        def toggle(label: str, visible: bool) -> None:
            if label not in handles:
                handles[label] = builders[label]()
            for handle in handles[label]:
                handle.visible = visible

        return {label: (lambda visible, label=label: toggle(label, visible)) for label in builders}

    def _add_training_cameras(self) -> list:
        scale = FRUSTUM_SCALE * float((self.scene.aabb[1] - self.scene.aabb[0]).norm())
        handles = []
        for index, asset in enumerate(self.scene.assets):
            cameras = training_cameras(asset.dataset)
            if cameras is None:
                print(f"fieldkit view: {asset.name} names no readable dataset; no training cameras to show",
                      file=sys.stderr)
                continue
            handles += add_frustums(self.server.scene, f"/cameras/{index}", cameras, asset.offset, scale)
        return handles

    def _add_bounds(self) -> list:
        return [add_bounds(self.server.scene, f"/bounds/{index}", asset.aabb, asset.offset)
                for index, asset in enumerate(self.scene.assets)]

    def _add_occupied_cells(self) -> list:
        return [add_occupied_cells(self.server.scene, f"/occupancy/{index}", asset.model.grid, asset.offset)
                for index, asset in enumerate(self.scene.assets)
                if isinstance(getattr(asset.model, "grid", None), OccupancyGrid)]

    def _apply_background(self) -> None:
        """With nothing rendered by fieldkit, the background option colours the browser's own background."""
        if not self.scene.rendered:
            colour = np.array(self.scene.options.background, dtype=np.float32)
            self.server.scene.set_background_image((np.ones((2, 2, 3)) * colour * 255).astype(np.uint8), format="png")

    def _aim_initial_camera(self) -> None:
        aabb = self.scene.aabb
        centre, diagonal = (aabb[0] + aabb[1]) / 2, float((aabb[1] - aabb[0]).norm())
        direction = torch.tensor([1.0, -1.2, 0.8]) / torch.tensor([1.0, -1.2, 0.8]).norm()
        camera = self.server.initial_camera
        camera.position = (centre + direction * diagonal * 1.1).numpy()
        camera.look_at = centre.numpy()
        camera.up = (0.0, 0.0, 1.0)

    def _label_comparison(self) -> None:
        if len(self.scene.assets) < 2:
            return
        for index, asset in enumerate(self.scene.assets):
            top = (asset.aabb[0] + asset.aabb[1]) / 2 + asset.offset
            top[2] = asset.aabb[1, 2] + asset.offset[2]
            self.server.scene.add_label(f"/labels/{index}", asset.name, position=top.numpy(), anchor="bottom-center")
