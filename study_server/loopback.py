"""An ASGI app (the study server, a market's fake) served by uvicorn in a background thread
on a loopback port: for `advcritic dry-run`, the tests and the benchmarks. Never for a real
study: that is `study-server serve`.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass
class ThreadedServer:
    """uvicorn serving an app in a thread of this process; `stop()` ends it."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def serve_in_thread(app: Any, *, port: int = 0, **uvicorn_options: Any) -> ThreadedServer:
    """Start `app` on 127.0.0.1:`port` (0: a free one, bound before uvicorn starts, so no other
    process can take it in between); returns once the server answers connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, **uvicorn_options)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn-{port}"
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server on 127.0.0.1:{port} did not start")
        time.sleep(0.02)
    return ThreadedServer(url=f"http://127.0.0.1:{port}", server=server, thread=thread)
