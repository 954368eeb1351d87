"""Who can reach the viewer, and on which address.

A web page the user happens to open must not read the scene: its websocket to the viewer carries
its own Origin, and a DNS-rebinding page's requests carry its own domain as Host; both get 403 and
no scene data, from raw clients here and from a real browser in test_viewer_browser.py. Bad
--host/--port values are one error line, at once.

The check hooks into viser's server (see fieldkit/viewer/serving.py): a viser upgrade that changes
how it serves fails these tests, or refuses to start the viewer with a message, never silently.
"""
from __future__ import annotations

import http.client
import socket
import threading

import pytest
import viser
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fieldkit.errors import FieldkitError
from fieldkit.viewer.serving import RequestPolicy

SUBPROTOCOL = f"viser-v{viser.__version__}"  # what viser's page asks for; viser closes other versions at once
SECONDS = 20


@pytest.fixture(scope="module")
def viewer():
    from fieldkit.viewer.app import Viewer
    from fieldkit.viewer.assets import model_asset
    from fieldkit.viewer.demo import ball_splats

    viewer = Viewer([model_asset("ball", ball_splats(count=50))], port=0)
    yield viewer
    viewer.close()


def get(port: int, host: str | list[str], origin: str | None = None, path: str = "/") -> tuple[int, bytes]:
    """GET `path` from 127.0.0.1:`port` with exactly these Host (one or several) and Origin headers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SECONDS)
    connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    for value in [host] if isinstance(host, str) else host:
        connection.putheader("Host", value)
    if origin is not None:
        connection.putheader("Origin", origin)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def first_message(port: int, origin: str | None = None, host: str | None = None) -> bytes:
    """Opens the viewer's websocket as its page does, and returns the first scene message."""
    headers = {"Host": host} if host else None
    with connect(f"ws://127.0.0.1:{port}", origin=origin, subprotocols=[SUBPROTOCOL], additional_headers=headers,
                 open_timeout=SECONDS) as websocket:
        return websocket.recv(timeout=SECONDS)


# -- websockets: only the viewer's own page ----------------------------------------------

FOREIGN_ORIGINS = ["http://evil.example", "http://evil.example:{port}", "null", "https://127.0.0.1:{port}",
                   "http://127.0.0.1:{other}", "http://127.0.0.1.evil.example:{port}", "http://localhost",
                   "http://user@127.0.0.1:{port}", "http://127.0.0.1:{port}/path"]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_a_page_from_another_origin_cannot_open_the_websocket(viewer, origin):
    origin = origin.format(port=viewer.port, other=viewer.port + 1)
    with pytest.raises(InvalidStatus) as refused:
        first_message(viewer.port, origin=origin)
    assert refused.value.response.status_code == 403
    assert b"refused" in refused.value.response.body and len(refused.value.response.body) < 300  # no scene


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:{port}", "http://localhost:{port}", "http://[::1]:{port}",
                                    "http://LocalHost:{port}"])
def test_the_viewers_own_page_and_scripts_open_the_websocket_and_get_the_scene(viewer, origin):
    message = first_message(viewer.port, origin=None if origin is None else origin.format(port=viewer.port))
    assert isinstance(message, bytes) and len(message) > 100  # msgpack scene messages


# -- HTTP and websocket: only requests for this viewer's address (no DNS rebinding) ----------

FOREIGN_HOSTS = ["evil.example:{port}", "evil.example", "127.0.0.1", "localhost", "127.0.0.1:{other}",
                 "127.0.0.1.evil.example:{port}", "evil.example@127.0.0.1:{port}", "localhost.:{port}", "",
                 "[::2]:{port}"]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_request_for_another_host_is_refused_without_the_page(viewer, host):
    status, body = get(viewer.port, host.format(port=viewer.port, other=viewer.port + 1))
    assert status == 403 and b"<html" not in body.lower() and b"refused" in body


def test_two_host_headers_are_refused(viewer):
    status, _ = get(viewer.port, [f"127.0.0.1:{viewer.port}", "evil.example"])
    assert status == 403


def test_a_websocket_for_another_host_is_refused(viewer):
    with pytest.raises(InvalidStatus) as refused:
        first_message(viewer.port, host=f"evil.example:{viewer.port}")
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_the_page_is_served_for_loopback_names_with_the_port(viewer, host):
    status, body = get(viewer.port, host.format(port=viewer.port))
    assert status == 200 and b"<html" in body.lower()


def test_a_foreign_origin_is_refused_over_plain_http_too(viewer):
    assert get(viewer.port, f"127.0.0.1:{viewer.port}", origin="http://evil.example")[0] == 403


# -- the policy for other bind addresses -------------------------------------------------

def refused(policy: RequestPolicy, host: str, local_ip: str = "127.0.0.1", origin: str | None = None) -> bool:
    headers = Headers(Host=host) if origin is None else Headers(Host=host, Origin=origin)
    return policy.refusal(headers, (local_ip, 8080)) is not None


def test_every_interface_answers_loopback_names_and_the_address_a_client_used_never_a_domain():
    policy = RequestPolicy("0.0.0.0", loopback=False)
    assert not refused(policy, "localhost:8080") and not refused(policy, "[::1]:8080")
    assert not refused(policy, "192.168.1.5:8080", local_ip="192.168.1.5")  # a LAN user who typed the address
    assert not refused(policy, "192.168.1.5:8080", "192.168.1.5", origin="http://192.168.1.5:8080")
    assert refused(policy, "192.168.1.6:8080", local_ip="192.168.1.5")
    assert refused(policy, "evil.example:8080", local_ip="192.168.1.5")  # rebinding to the LAN address
    assert refused(policy, "192.168.1.5:8080", "192.168.1.5", origin="http://evil.example")


def test_a_named_host_answers_its_name_and_a_lan_address_no_loopback_alias():
    named = RequestPolicy("viewer.lan", loopback=False)
    assert not refused(named, "viewer.lan:8080", local_ip="10.0.0.2")
    assert not refused(named, "Viewer.LAN:8080", local_ip="10.0.0.2", origin="http://viewer.lan:8080")
    assert refused(named, "localhost:8080", local_ip="10.0.0.2")
    lan = RequestPolicy("10.0.0.2", loopback=False)
    assert not refused(lan, "10.0.0.2:8080", local_ip="10.0.0.2") and refused(lan, "localhost:8080", "10.0.0.2")
    loopback_name = RequestPolicy("vm", loopback=True)  # a name /etc/hosts maps to 127.0.0.1
    assert not refused(loopback_name, "vm:8080") and not refused(loopback_name, "localhost:8080")


# -- the hook into viser -----------------------------------------------------------------

def test_the_hook_is_only_in_place_while_a_viewer_starts(viewer):
    import websockets
    from viser.infra import _infra

    assert _infra.websockets is websockets


def test_a_viser_that_serves_another_way_is_refused_not_served_unguarded(monkeypatch):
    """If viser stops starting its server through the name `websockets` of viser.infra._infra, the
    viewer refuses to start with one line naming the viser version."""
    import types

    from viser.infra import _infra

    from fieldkit.viewer import serving

    monkeypatch.setattr(_infra, "websockets", types.ModuleType("websockets"))  # no asyncio.server.serve
    with pytest.raises(FieldkitError, match=f"viser {viser.__version__}"):
        serving.start_server("127.0.0.1", 0, "test")
    monkeypatch.undo()

    def nothing_guarded(policy):  # as if viser bound its port without going through the guarded serve
        import contextlib

        return contextlib.nullcontext([])

    monkeypatch.setattr(serving, "_guarded_serve", nothing_guarded)
    with pytest.raises(FieldkitError, match="cannot refuse other web pages"):
        serving.start_server("127.0.0.1", 0, "test")


# -- ports and hosts: one error line, at once --------------------------------------------

def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    """`fieldkit ARGV` in this process -> (exit status, stderr lines); fails if it has not ended in
    SECONDS (a viewer that started, or a hang)."""
    from fieldkit.cli import main

    ended: dict = {}

    def run() -> None:
        try:
            ended["status"] = main(argv)
        except SystemExit as exit:
            ended["status"] = exit.code

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(SECONDS)
    assert not thread.is_alive(), f"fieldkit {' '.join(argv)} did not end within {SECONDS} s"
    return ended["status"], capsys.readouterr().err.splitlines()


@pytest.fixture(scope="module")
def mesh_file(tmp_path_factory):
    from fieldkit.viewer.demo import box_mesh

    path = tmp_path_factory.mktemp("mesh") / "box.glb"
    box_mesh().export(path)
    return path


@pytest.mark.parametrize("options, message", [
    (["--port", "99999"], "--port '99999' is not a port number"),
    (["--port", "-5"], "--port '-5' is not a port number"),
    (["--port", "abc"], "--port 'abc' is not a port number"),
    (["--host", "no.such.host.invalid"], "'no.such.host.invalid': it does not resolve"),
    (["--host", "8.8.8.8"], "8.8.8.8: it is not an address of this machine"),
])
def test_bad_ports_and_hosts_are_one_error_line(mesh_file, capsys, options, message):
    status, lines = run_cli(["view", str(mesh_file), *options], capsys)
    assert status == 2 and len(lines) == 1 and lines[0].startswith("fieldkit: error: ") and message in lines[0], lines


def test_a_port_in_use_is_one_error_line(mesh_file, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, lines = run_cli(["view", str(mesh_file), "--port", str(port)], capsys)
    assert status == 2 and len(lines) == 1 and f"port {port} on 127.0.0.1 is in use" in lines[0], lines


def test_a_bad_live_view_port_stops_train_before_it_starts(tmp_path, capsys):
    status, lines = run_cli(["train", "tabletop", "--out", str(tmp_path / "run"), "--view", "--view-port", "99999"],
                            capsys)
    assert status == 2 and lines == [("fieldkit: error: --view-port '99999' is not a port number; give one of 1-65535, "
                                      "or 0 for any free port")]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", [["train", "tabletop"], ["generate", "a red cube"]])
def test_a_bad_live_view_host_stops_a_job_before_it_writes_anything(verb, tmp_path, capsys):
    status, lines = run_cli([*verb, "--out", str(tmp_path / "run"), "--view", "--view-host", "no.such.host.invalid"],
                            capsys)
    assert status == 2 and len(lines) == 1 and "cannot serve the viewer on" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_live_viewer_on_a_bad_host_is_one_error_line():
    from fieldkit.viewer.demo import ball_splats
    from fieldkit.viewer.live import LiveView

    for host in ("no.such.host.invalid", "8.8.8.8"):
        with pytest.raises(FieldkitError, match="cannot serve the viewer on"):
            LiveView("test", host=host, port=0).start(ball_splats(count=10))
