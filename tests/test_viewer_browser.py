"""`fieldkit view` in a real browser: Debian's chromium, headless, driven by Playwright.

Each test starts the real command on a free port, opens the page, waits for the asset's
colour to appear where the camera looks, and moves the camera with the mouse wheel.
The demo assets have one colour each: a red field, green splats, a blue mesh.
"""
from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from fieldkit.viewer.browser import CHROMIUM, chromium

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
# where the asset sits on screen: the middle of the canvas, left of the control panel
CENTRE = (slice(220, 380), slice(320, 460))  # rows, columns
SCENE_SECONDS = 40  # software WebGL on a busy 2-core machine
COLOURS = {
    "red": lambda rgb: (rgb[..., 0] > 170) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90),
    "green": lambda rgb: (rgb[..., 1] > 120) & (rgb[..., 0] < 110) & (rgb[..., 2] < 120),
    "blue": lambda rgb: (rgb[..., 2] > 140) & (rgb[..., 0] < 130) & (rgb[..., 1] < 150),
}
ASSET_COLOURS = {"field": "red", "splats": "green", "mesh": "blue"}


@pytest.fixture(scope="module")
def demo_assets(tmp_path_factory):
    from fieldkit.viewer.demo import write_demo_assets

    return write_demo_assets(tmp_path_factory.mktemp("view-assets"))


# a DNS-rebinding attacker's domain, as it resolves once the attack has begun
REBOUND_DOMAIN = "evil.example"


@pytest.fixture(scope="module")
def browser():
    with chromium(args=[f"--host-resolver-rules=MAP {REBOUND_DOMAIN} 127.0.0.1"]) as context:
        yield context


class ViewCommand:
    """`fieldkit view PATHS --port 0` in a subprocess; `url` is what it printed."""

    def __init__(self, *paths):
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "fieldkit.cli", "view", *map(str, paths), "--port", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.url = None
        for line in self.process.stdout:
            found = re.search(r"http://[\w.]+:\d+", line)
            if found:
                self.url = found.group(0)
                break
        assert self.url, f"fieldkit view printed no URL: {self.process.stdout.read() if self.process.poll() is not None else ''}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)


def screenshot(page) -> np.ndarray:  # [H, W, 3] uint8
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))


def wait_until(page, condition, seconds: float = SCENE_SECONDS) -> np.ndarray:
    """Screenshots until `condition(image)` holds; the last one is returned either way."""
    deadline = time.monotonic() + seconds
    while True:
        image = screenshot(page)
        if condition(image) or time.monotonic() > deadline:
            return image
        time.sleep(0.3)


def coverage(image: np.ndarray, colour: str, region=CENTRE) -> float:
    return float(COLOURS[colour](image[region].astype(np.int32)).mean())


def open_page(browser, url: str):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("canvas", timeout=SCENE_SECONDS * 1000)
    return page


@pytest.mark.parametrize("kind", ["field", "splats", "mesh"])
def test_view_shows_the_asset_and_follows_the_camera(browser, demo_assets, kind):
    colour = ASSET_COLOURS[kind]
    with ViewCommand(demo_assets[kind]) as view:
        page = open_page(browser, view.url)
        before = wait_until(page, lambda image: coverage(image, colour) > 0.5)
        assert coverage(before, colour) > 0.5, f"the {kind}'s {colour} does not fill the middle of the view"
        canvas = before[150:, :460].astype(np.float32)
        assert canvas.std() > 20, "the canvas is blank"
        # background around the asset: viser's white (the field's own background is white too)
        assert (before[540:590, 150:300] > 230).all(), "the background is not white"
        whole = (slice(150, 600), slice(0, 460))
        area = coverage(before, colour, whole)
        page.mouse.move(400, 300)
        page.mouse.wheel(0, -400)  # zoom in: the asset must grow on screen
        after = wait_until(page, lambda image: coverage(image, colour, whole) > area * 1.4)
        assert coverage(after, colour, whole) > area * 1.4, f"zooming in did not enlarge the {kind}"
        page.close()


def test_comparison_shows_both_assets_with_one_camera(browser, demo_assets):
    with ViewCommand(demo_assets["field"], demo_assets["splats"]) as view:
        page = open_page(browser, view.url)
        whole = (slice(150, 600), slice(0, 460))

        def both(image):
            return coverage(image, "red", whole) > 0.01 and coverage(image, "green", whole) > 0.01

        image = wait_until(page, both)
        assert coverage(image, "red", whole) > 0.01, "the field (red) is missing from the comparison"
        assert coverage(image, "green", whole) > 0.01, "the splats (green) are missing from the comparison"
        # side by side: the field left of the splats
        red_columns = np.nonzero(COLOURS["red"](image[whole].astype(np.int32)).any(axis=0))[0]
        green_columns = np.nonzero(COLOURS["green"](image[whole].astype(np.int32)).any(axis=0))[0]
        assert np.median(red_columns) < np.median(green_columns)
        page.close()


TRAVERSALS = ["/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
              "/%252e%252e/%252e%252e/etc/passwd", "/..\\..\\..\\etc\\passwd", "/assets/../../../../etc/passwd",
              "//etc/passwd", "/etc/passwd", "/field.safetensors", "/..%00/etc/passwd"]


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """An HTTP GET with the path sent byte for byte (browsers and HTTP clients would tidy `..` away)."""
    host, port = re.match(r"http://([\w.]+):(\d+)", url).groups()
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_no_path_from_the_browser_reaches_the_file_system(browser, demo_assets):
    asset_bytes = demo_assets["field"].read_bytes()[:4096]
    with ViewCommand(demo_assets["field"]) as view:
        status, page = raw_get(view.url, "/")
        assert status == 200 and b"<html" in page.lower(), "the viewer's own page must still be served"
        for path in TRAVERSALS + [str(demo_assets["field"])]:
            status, body = raw_get(view.url, path)
            assert status >= 400, f"{path} answered {status}"
            assert b"root:" not in body and asset_bytes[:64] not in body, f"{path} leaked a file"
        # nor does a script in the viewer's own page
        page = open_page(browser, view.url)
        fetch = "async path => { const r = await fetch(path); return [r.status, await r.text()]; }"
        for path in TRAVERSALS[:4]:
            status, body = page.evaluate(fetch, path)
            assert status == 404 and "root:" not in body, f"{path} from the page answered {status}"
        page.close()


OPEN_WEBSOCKET = """([url, protocol]) => new Promise(done => {
  const socket = new WebSocket(url, [protocol]);
  socket.binaryType = "arraybuffer";
  socket.onmessage = event => { done(`scene: ${event.data.byteLength} bytes`); socket.close(); };
  socket.onerror = () => done("refused");
  setTimeout(() => done("no answer"), 20000);
})"""


@pytest.fixture
def other_site(tmp_path):
    """Another web site on this machine (another origin): what an attacker's page would be."""
    import functools
    import http.server
    import threading

    (tmp_path / "index.html").write_text("<html><body>another site</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_other_web_pages_cannot_read_the_scene(browser, demo_assets, other_site):
    """Chromium itself lets a page of another origin open a websocket to the viewer, and lets a
    DNS-rebinding page (REBOUND_DOMAIN, mapped to 127.0.0.1) load it: the viewer refuses both."""
    import viser

    protocol = f"viser-v{viser.__version__}"
    with ViewCommand(demo_assets["mesh"]) as view:
        port = int(view.url.rsplit(":", 1)[1])
        page = browser.new_page()
        page.goto(other_site)
        assert page.evaluate(OPEN_WEBSOCKET, [f"ws://127.0.0.1:{port}", protocol]) == "refused"
        response = page.goto(f"http://{REBOUND_DOMAIN}:{port}/")
        assert response.status == 403 and "<html" not in response.text().lower()
        page.goto(view.url)  # the viewer's own page still gets the scene
        assert page.evaluate(OPEN_WEBSOCKET, [f"ws://127.0.0.1:{port}", protocol]).startswith("scene: ")
        page.close()


def test_live_view_survives_clients_coming_and_going(browser, tiny_dataset, fast_settings, tmp_path):
    from fieldkit.train import make_trainer
    from fieldkit.viewer.live import watching

    config, overrides = fast_settings["hashgrid"]
    config.steps = 40
    trainer = make_trainer(str(tiny_dataset), "hashgrid", tmp_path / "run", config, overrides)
    pages = []

    def step_then_visit(step, figures, update):
        update(step, figures)
        if step in (5, 20):  # a browser arrives mid-run; the first one leaves again
            page = open_page(browser, live.viewer.url)
            pages.append(page)
            wait_until(page, lambda image: image[150:, :460].std() > 20, seconds=20)
        if step == 25:
            pages.pop(0).close()

    with watching(trainer, "train", port=0) as live:
        live.every_seconds = 0.0
        update = trainer.step_callback
        trainer.step_callback = lambda step, figures: step_then_visit(step, figures, update)
        metrics = trainer.run_training()
        progress = live._progress.content
    assert metrics["steps"] == 40 and np.isfinite(metrics["psnr_test"])
    assert "step" in progress and "loss" in progress
    for page in pages:
        page.close()


def test_orbit_export_and_screenshot_show_fields_and_splats(browser, demo_assets):
    import threading

    import imageio.v3 as iio

    from fieldkit.viewer.app import Viewer
    from fieldkit.viewer.assets import open_asset
    from fieldkit.viewer.export import encode, orbit_frames, screenshot_png

    viewer = Viewer([open_asset(demo_assets["field"]), open_asset(demo_assets["splats"])], port=0)
    page = open_page(browser, viewer.url)
    # on a loaded machine the splats can reach the browser after the page opens: export once both show
    wait_until(page, lambda image: COLOURS["red"](image.astype(np.int32)).any()
               and COLOURS["green"](image.astype(np.int32)).any())
    client = next(iter(viewer.server.get_clients().values()))
    files = {}
    work = threading.Thread(target=lambda: files.update(gif=encode(orbit_frames(client, viewer.scene, 3, 64), "gif"),
                                                        png=screenshot_png(client, viewer.scene)))
    work.start()
    while work.is_alive():
        page.wait_for_timeout(200)  # the browser answers the render requests meanwhile
    page.close()
    viewer.close()
    frames = iio.imread(files["gif"])  # [3, 64, 64, 3]
    assert frames.shape == (3, 64, 64, 3)
    shot = iio.imread(files["png"])[..., :3]
    for image in (*frames, shot):
        assert COLOURS["red"](image.astype(np.int32)).any() and COLOURS["green"](image.astype(np.int32)).any()
        assert (image[0, 0] > 240).all()  # the white background, not a transparent black
