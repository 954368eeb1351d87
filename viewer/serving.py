"""viser's server, started safely: its address checked first, and every request checked for who sent it.

**The address.** viser silently moves to the next port when one is taken, and waits forever when it
cannot bind at all (a port out of range, a name that does not resolve, an address this machine does
not own). `check_address` tries the bind itself first, so each of those is one FieldkitError line.

**Who may talk to it.** A server on 127.0.0.1 is reachable from every web page the user opens:
browsers let any page open a websocket to any address (the same-origin policy does not cover
websockets), and a page on a domain whose DNS the attacker points at 127.0.0.1 after loading (DNS
rebinding) reads the server as if it were its own origin. So the viewer answers a request only when

- its `Host` header names this viewer, with the port it serves: `localhost`, `127.0.0.1` or `[::1]`
  when it is bound to a loopback or wildcard address, the address the connection arrived on, or
  the host it was told to bind (`--host NAME`); a rebinding page sends its own domain and is refused;
- its `Origin` header, where there is one, is this viewer's own: `http://` and such a host and port
  (a browser sends the page's origin with every websocket; scripts such as the tests send none).

Anything else gets HTTP 403 with one line of text and no scene data.

**How it hooks into viser** (1.1; it has no hook of its own). viser's `WebsockServer` serves its page
and its websocket on one port through `websockets.asyncio.server.serve(handler, host, port,
process_request=viser_http_server, ...)`, called in its server thread as an attribute lookup on the
name `websockets` of the module `viser.infra._infra`. While `start_server` constructs a
`ViserServer`, that one name is bound to a view of the `websockets` package whose
`asyncio.server.serve` is `serve` subclassed to put `RequestPolicy.check` in front of viser's own
`process_request`; every other attribute is the real package's, and the name is restored as soon as
the server is listening. Only the module `viser.infra._infra` sees the view, and only while a viewer
starts (a lock keeps two viewers from starting at once). `start_server` then checks that the
guarded `serve` really was the one that bound the viewer's port, and refuses to serve otherwise.

What would break it, loudly (a FieldkitError naming the viser version, and the tests in
tests/test_viewer_security.py): viser no longer importing `websockets` into `viser.infra._infra`
(e.g. `from websockets.asyncio.server import serve`), starting its server through something other
than `websockets.asyncio.server.serve`, or `websockets` renaming `process_request`,
`ServerConnection.respond` or `local_address`. A viser that serves HTTP on a second port, outside
`serve`, would not be caught here: the tests' raw requests to the viewer's port would still pass,
so read viser's changelog for that.
"""
from __future__ import annotations

import contextlib
import errno
import http
import io
import ipaddress
import logging
import re
import socket
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass

from fieldkit.errors import FieldkitError

from . import DEFAULT_PORT

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# a Host header (and an Origin after "http://"): a DNS name or IPv4 address, or an IPv6 address in
# brackets, then the port. No user info, path or trailing dot: browsers send none of those.
HOST_AND_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*):([0-9]{1,5})")
_STARTING = threading.Lock()  # one viewer starts at a time: the hook below is a module-wide name


# -- the address -------------------------------------------------------------------------

def check_port(port) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise FieldkitError(f"port {port!r} is not a port number; give one of 1-65535, or 0 for any free port")


def check_address(host: str, port: int | None) -> bool:
    """Binds `host`:`port` for a moment (`port` None: any port) the way viser will, so that a problem
    is a FieldkitError now. Returns whether every address `host` names is a loopback one."""
    if port is not None:
        check_port(port)
    try:
        found = socket.getaddrinfo(host or None, port or 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError, ValueError) as error:  # gaierror; idna refuses a too-long name; a NUL
        reason = getattr(error, "strerror", None) or str(error)
        raise FieldkitError(f"cannot serve the viewer on host {host!r}: it does not resolve ({reason}); give an "
                            "address of this machine, such as 127.0.0.1 (or 0.0.0.0 for every interface)") from None
    addresses = sorted({(family, address) for family, _, _, _, address in found}, key=str)
    with contextlib.ExitStack() as stack:  # held together, as viser (asyncio) binds every address at once
        for family, address in addresses:
            trial = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
            if family == socket.AF_INET6:
                trial.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio does
            try:
                trial.bind(address)
            except OSError as error:
                raise FieldkitError(_bind_problem(host, port, address[0], error)) from None
    return host not in WILDCARD_HOSTS and all(ipaddress.ip_address(address[0].split("%")[0]).is_loopback
                                              for _, address in addresses)


def _bind_problem(host: str, port: int | None, address: str, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use (another viewer?); choose another port, or 0 for any free one"
    if error.errno == errno.EADDRNOTAVAIL:
        shown = host if host == address else f"{host} ({address})"
        return (f"cannot serve the viewer on {shown}: it is not an address of this machine; give one of its "
                "own addresses, 127.0.0.1, or 0.0.0.0 for every interface")
    if error.errno == errno.EACCES:
        return f"port {port} on {host} needs administrator rights; choose a port above 1023, or 0 for any free one"
    return f"cannot serve the viewer on {host}:{port} ({error.strerror or error}); choose another host or port"


# -- who may talk to it ------------------------------------------------------------------

@dataclass(frozen=True)
class RequestPolicy:
    """Which `Host` and `Origin` headers a viewer bound to `host` answers."""

    host: str  # as given to bind: a name, an address, or "", 0.0.0.0 or :: for every interface
    loopback: bool  # every address `host` names is a loopback one

    def names(self, local_ip: str) -> set[str]:
        """Host names (lower case, IPv6 without brackets) that mean this viewer, for a connection
        that arrived on `local_ip`."""
        names = {local_ip.split("%")[0].lower()}  # the address the client connected to, e.g. a LAN user's
        if self.loopback or self.host in WILDCARD_HOSTS:
            names |= LOOPBACK_NAMES
        if self.host not in WILDCARD_HOSTS:
            names.add(self.host.strip("[]").lower())
        return names

    def refusal(self, headers, local_address: tuple) -> str | None:
        """Why a request with these headers, on a connection to `local_address`, is not answered; None
        when it is."""
        names, port = self.names(str(local_address[0])), int(local_address[1])
        hosts = headers.get_all("Host")
        if len(hosts) != 1 or not _names_this(hosts[0], names, port):
            shown = hosts[0] if len(hosts) == 1 else f"{len(hosts)} Host headers"
            return (f"refused: the Host {shown!r} is not this viewer's address; open the address it printed, or "
                    "start it with --host set to the name you use")
        origins = headers.get_all("Origin")
        if origins and (len(origins) != 1 or not origins[0].startswith("http://")
                        or not _names_this(origins[0][len("http://"):], names, port)):
            return f"refused: a page from {', '.join(origins)!r} may not open this viewer; only its own page may"
        return None

    def guard(self, process_request: Callable | None) -> Callable:
        """`process_request` (viser's, which serves its files) behind `check`: a function for
        `websockets.asyncio.server.serve(process_request=...)`."""

        def check(connection, request):
            refusal = self.refusal(request.headers, connection.local_address)
            if refusal is not None:
                return connection.respond(http.HTTPStatus.FORBIDDEN, f"fieldkit view: {refusal}\n")
            return None if process_request is None else process_request(connection, request)

        return check


def _names_this(host_and_port: str, names: set[str], port: int) -> bool:
    match = HOST_AND_PORT.fullmatch(host_and_port)
    return bool(match) and int(match.group(2)) == port and match.group(1).strip("[]").lower() in names


# -- the hook ----------------------------------------------------------------------------

class _ModuleView(types.ModuleType):
    """`module`, with some attributes answered differently."""

    def __init__(self, module: types.ModuleType, **overrides):
        super().__init__(module.__name__, module.__doc__)
        self.__dict__.update(overrides, _module=module)

    def __getattr__(self, name: str):  # only for names not overridden
        return getattr(self.__dict__["_module"], name)


@contextlib.contextmanager
def _guarded_serve(policy: RequestPolicy):
    """While it is open, viser's `websockets.asyncio.server.serve(...)` puts `policy` in front of
    viser's `process_request`; yields the list of the servers it guarded."""
    import viser
    from viser.infra import _infra

    real = getattr(_infra, "websockets", None)
    serve = getattr(getattr(getattr(real, "asyncio", None), "server", None), "serve", None)
    if not isinstance(serve, type):
        raise FieldkitError(_unhooked(viser.__version__))
    guarded: list = []

    class GuardedServe(serve):
        def __init__(self, *args, **kwargs):
            kwargs["process_request"] = policy.guard(kwargs.get("process_request"))
            super().__init__(*args, **kwargs)
            guarded.append(self)

    server_module = _ModuleView(real.asyncio.server, serve=GuardedServe)
    view = _ModuleView(real, asyncio=_ModuleView(real.asyncio, server=server_module))
    _infra.websockets = view
    try:
        yield guarded
    finally:
        _infra.websockets = real


def _unhooked(version: str) -> str:
    return (f"viser {version} starts its server in a way fieldkit's viewer does not know, so it cannot refuse other "
            "web pages; install viser 1.1 (pip install 'viser>=1.1,<1.2') or a fieldkit that knows this viser")


class _QuietHandshakes(logging.Filter):
    """viser's own filter, installed up front: viser adds it to websockets' logger only when its
    `process_request` first runs, so after a refused first request each spare connection that a
    browser opens and closes unused would log a traceback ("opening handshake failed")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in ("opening handshake failed", "connection rejected (200 OK)")


def start_server(host: str, port: int | None, label: str):
    """A running `viser.ViserServer` on `host`:`port` (None: DEFAULT_PORT or the next free one) that
    answers only its own page (see the module's docstring)."""
    import viser

    host = host or ""  # None, as viser takes it: every interface
    loopback = check_address(host, port)
    logger = logging.getLogger("websockets.server")  # what websockets' serve logs to
    if not any(isinstance(existing, _QuietHandshakes) for existing in logger.filters):
        logger.addFilter(_QuietHandshakes())
    # redirect_stdout: viser's banner; the verbs print one line of their own
    with _STARTING, _guarded_serve(RequestPolicy(host, loopback)) as guarded, contextlib.redirect_stdout(io.StringIO()):
        server = viser.ViserServer(host=host, port=DEFAULT_PORT if port is None else port, label=label, verbose=False)
    bound = server.get_port()
    if not any(_listens_on(serve, bound) for serve in guarded):
        stop_server(server)
        raise FieldkitError(_unhooked(viser.__version__))
    if port and bound != port:  # taken between check_address and viser's bind; viser moved on silently
        stop_server(server)
        raise FieldkitError(_bind_problem(host, port, host, OSError(errno.EADDRINUSE, "in use")))
    return server


def _listens_on(serve, port: int) -> bool:
    sockets = getattr(getattr(getattr(serve, "server", None), "server", None), "sockets", None) or ()
    return any(sock.getsockname()[1] == port for sock in sockets)


def stop_server(server) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # viser's "server stopped"
        server.stop()
