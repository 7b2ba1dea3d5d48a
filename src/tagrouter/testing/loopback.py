"""Helpers for servers run as processes on loopback (tests and the benchmark scripts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Return once ``url`` answers below 500; raise SystemExit if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited early with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up within {timeout_s:g} s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The ``tagrouter`` command, run by this Python (so that tests need not find the installed script).
TAGROUTER = [sys.executable, "-c", "from tagrouter.cli import main; main()"]


def start_serve(
    router: Path, config: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """Start ``tagrouter serve`` on a free loopback port in its own process; returns it and its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            *TAGROUTER,
            "serve",
            str(router),
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"
