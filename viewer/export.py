"""What the user takes away: a screenshot of the current view, and an orbit camera path as an
MP4 or GIF. Both are sent to the browser as downloads; nothing is written on the server.

A picture is fieldkit's server render (fields, any Renderable but splats) with the browser's own
render of splats and meshes laid over it (viser renders those with a transparent background).
Unlike the live view, it has no depth test between the two: splats and meshes always sit in
front of fields.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from fieldkit.rendering import turntable_around

from .cameras import view_from_camera
from .scene import View, ViewScene

VIDEO_FORMATS = ("mp4", "gif")
FRAMES_PER_SECOND = 15


def picture(client, scene: ViewScene, view: View, rows: int) -> np.ndarray:  # uint8 [H, W, 3]
    """The scene from `view`, `rows` high."""
    width = max(round(rows * view.aspect), 1)
    if scene.rendered:
        under = scene.render_view(view, rows)[0].astype(np.float32) / 255
    else:
        under = np.broadcast_to(np.asarray(scene.options.background, dtype=np.float32), (rows, width, 3))
    if len(scene.rendered) < len(scene.assets):
        rgba = client.get_render(rows, width, wxyz=view.wxyz, position=view.position, fov=view.fov,
                                 transport_format="png").astype(np.float32) / 255  # [H, W, 4]
        under = rgba[..., :3] * rgba[..., 3:] + under * (1 - rgba[..., 3:])
    return (under * 255).round().astype(np.uint8)


def screenshot_png(client, scene: ViewScene) -> bytes:
    """The client's current view at its canvas height."""
    return encode(picture(client, scene, View.of(client.camera), int(client.camera.image_height)), "png")


def orbit_frames(client, scene: ViewScene, count: int, rows: int) -> list[np.ndarray]:
    """N views on a turntable around every asset."""
    cameras = turntable_around(scene.aabb, count, rows)
    views = [view_from_camera(cameras, index) for index in range(count)]
    return [picture(client, scene, View(tuple(view["wxyz"]), tuple(view["position"]), view["fov"], view["aspect"]),
                    rows) for view in views]


def encode(frames: np.ndarray | list[np.ndarray], extension: str) -> bytes:
    """An image (png) or frames (mp4, gif) as file bytes, through a temporary file because
    ffmpeg writes only to files."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"out.{extension}"
        if extension == "png":
            imageio.imwrite(path, frames)
        elif extension == "gif":
            imageio.mimwrite(path, frames, duration=1000 / FRAMES_PER_SECOND, loop=0)
        else:
            imageio.mimwrite(path, frames, fps=FRAMES_PER_SECOND, macro_block_size=1)
        return path.read_bytes()
