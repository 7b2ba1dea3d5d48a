"""Run an ASGI app with uvicorn in a background thread on a free loopback port (tests, benchmarks, demos)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from tagrouter.server import UVICORN_LOOP


class ThreadedServer:
    """``with ThreadedServer(app) as server: ... server.url ...``; leaving the block shuts it down gracefully."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **uvicorn_options: Any) -> None:
        # proto IPPROTO_TCP, as uvicorn's own sockets have: asyncio sets TCP_NODELAY only on such sockets, and
        # without it each answer waited about 40 ms for a delayed ACK (Nagle's algorithm)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        options = {
            "log_level": "warning",
            "lifespan": "on",
            "timeout_graceful_shutdown": 30,
            "loop": UVICORN_LOOP,
            **uvicorn_options,
        }
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> ThreadedServer:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop accepting connections, finish the requests in flight, run the app's shutdown, and return."""
        self.server.should_exit = True
        self._thread.join(timeout_s)
        self._socket.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
