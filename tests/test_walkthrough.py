"""The README's gateway walk-through ("From `pip install` to an OpenAI client"), run as the README writes it.

The two code blocks are read out of README.md, so this test breaks when the README drifts: the shell block
runs in bash (its set-up lines, which install into the reader's venv, are checked instead: this test runs in
a venv that has them), with ``tagrouter`` and ``python`` being this Python's, and the ports 9000 and 8000
replaced by free ones; the Python block then runs against the gateway it started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("openai", reason="the walk-through's client is the official openai package")
httpx = pytest.importorskip("httpx")

from tagrouter.testing.loopback import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = "### From `pip install` to an OpenAI client"
SETUP = ("source .venv/bin/activate", "pip install ")


def walkthrough_blocks(readme: str) -> tuple[str, str]:
    """The walk-through's bash block and its Python block, as the README writes them."""
    start = readme.index(SECTION)
    section = readme[start : readme.index("\n### ", start + 1)]
    bash = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    python = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert bash and python, "the walk-through lost its bash or its python block"
    return bash.group(1), python.group(1)


def test_the_readme_walkthrough_routes_to_several_models_and_saves(tmp_path: Path) -> None:
    shell, client = walkthrough_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    setup = [line for line in shell.splitlines() if line.startswith(SETUP)]
    assert len(setup) == 2, "the walk-through must say to activate the venv and what to install"
    assert "openai" in setup[1].split("#")[0], "the walk-through's client needs 'pip install openai'"
    shell = "\n".join(line for line in shell.splitlines() if not line.startswith(SETUP))
    upstream, gateway = free_port(), free_port()
    shell, client = (
        text.replace("9000", str(upstream)).replace("8000", str(gateway)) for text in (shell, client)
    )
    bin_dir = tmp_path / "bin"  # what `source .venv/bin/activate` gives: the venv's python and tagrouter
    bin_dir.mkdir()
    for name, command in (("python", ""), ("tagrouter", ' -c "from tagrouter.cli import main; main()"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}"{command} "$@"\n')
        (bin_dir / name).chmod(0o755)
    (tmp_path / "src").symlink_to(ROOT / "src")  # the commands' paths are relative to a checkout
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        ["bash", "-c", shell],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # one process group: the stand-in upstream and the gateway
    )
    try:
        deadline = time.monotonic() + 180
        for url in (f"http://127.0.0.1:{upstream}/docs", f"http://127.0.0.1:{gateway}/healthz"):
            while True:  # a reader would wait for both servers' start-up lines
                try:
                    if httpx.get(url).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
                time.sleep(0.2)
        ran = subprocess.run(
            [sys.executable, "-c", client], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert ran.returncode == 0, ran.stderr + output
    chosen = [line.split(" <- ")[0] for line in ran.stdout.splitlines() if " <- " in line]
    assert len(chosen) == 4 and set(chosen) <= {"small-7b", "mid-70b", "large-api"}, ran.stdout
    assert len(set(chosen)) >= 2, f"every request went to {chosen[0]}: the example does not route"
    saved = re.findall(r"tagrouter_estimated_cost_saved_usd\{[^}]*\} ([0-9.e+-]+)", ran.stdout)
    assert saved and float(saved[0]) > 0, ran.stdout
