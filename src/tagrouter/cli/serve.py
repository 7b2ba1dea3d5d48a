"""The ``tagrouter serve`` command: run the OpenAI-compatible routing gateway with uvicorn."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tagrouter.errors import TagRouterError
from tagrouter.server import SWITCH_INTERVAL_S, UVICORN_LOOP


class LogLevel(StrEnum):
    """The log levels uvicorn accepts."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


def serve(
    router_dir: Annotated[Path, typer.Argument(help="A saved router (from 'tagrouter fit').")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Gateway config (YAML); see docs/gateway.md.")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[LogLevel, typer.Option(help="uvicorn log level.")] = LogLevel.INFO,
    graceful_shutdown_s: Annotated[
        int, typer.Option(help="On SIGTERM/SIGINT, wait this long for requests in flight.")
    ] = 30,
) -> None:
    """Serve ROUTER_DIR as an OpenAI-compatible endpoint that routes each request to a model."""
    try:
        import uvicorn

        from tagrouter.server.app import create_app
    except ImportError as exc:
        raise TagRouterError(
            f"the gateway needs the server extra ({exc.name} is missing): pip install 'tagrouter[server]'"
        ) from None
    from tagrouter.router import TagRouter
    from tagrouter.server.config import GatewayConfig, load_gateway_config

    settings = load_gateway_config(config) if config else GatewayConfig()
    app = create_app(TagRouter.load(router_dir), settings, router_dir=router_dir)
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # this process is the gateway's: its event loop comes first
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=str(log_level),
        timeout_graceful_shutdown=graceful_shutdown_s,
        loop=UVICORN_LOOP,
    )
