"""Serve the fake provider with uvicorn on a loopback socket we bind ourselves, so port 0 works and the
chosen port can be announced on stdout (the test fixture reads that line).

The loop is uvloop when installed (it is a project dependency) and uvicorn uses httptools: the fake stands in
for a provider's fleet, so in a benchmark it must not be the bottleneck. `uvicorn.Server.serve()` does not set
up the loop itself (only `Server.run()` does), hence the explicit loop factory. Measured in bench/README.md.
"""

import asyncio
import socket
import sys

import uvicorn

from .app import FakeProvider

READY_PREFIX = "FAKE_PROVIDER_URL "


def _loop_factory():
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def serve(*, host: str = "127.0.0.1", port: int = 9100) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY on Linux; without it small SSE chunks wait for delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    url = f"http://{host}:{sock.getsockname()[1]}"
    # Idle keep-alive connections stay open longer than the routing client keeps them (30 s), like real
    # providers: with uvicorn's 5 s default, a turn could pick a pooled connection at the moment the fake closed
    # it, fail with a ReadError and fall back to another model.
    config = uvicorn.Config(FakeProvider(), lifespan="off", log_level="warning", access_log=False,
                            timeout_graceful_shutdown=1, http="httptools", backlog=2048, timeout_keep_alive=75)
    print(f"{READY_PREFIX}{url}", flush=True)
    print(f"Anthropic: ANTHROPIC_BASE_URL={url}  OpenAI-compatible: MOONSHOT_BASE_URL={url}/v1",
          file=sys.stderr, flush=True)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(uvicorn.Server(config).serve(sockets=[sock]))
