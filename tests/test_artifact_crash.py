"""A crash at any point of a router save: the reader sees the old router or the new one, never a mix and
never none (README and ``tagrouter.artifact``: "a reader, or a crash at any moment, sees the old router
or the new one").

The save runs in a forked child that dies (``os._exit``, no clean-up, no ``finally``) just before its
k-th file-system call (a file created, written to disk, renamed, removed, a folder made or flushed), for
every k until a save completes. After each crash the parent loads the folder and compares it with both
routers. Bug caught (checked by hand): ``save_router`` switching ``CURRENT`` to the new version before the
version's files are all written; a crash in between leaves a router that cannot be loaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tagrouter.artifact import live_version
from tagrouter.deciding import Decider
from tagrouter.records import HistoryRecord
from tagrouter.router import TagRouter

if not hasattr(os, "fork"):
    pytest.skip("the crash test forks a child process (POSIX only)", allow_module_level=True)

#: the file-system calls a crash is injected before
CRASH_POINTS = ("open", "fsync", "replace", "rename", "mkdir", "unlink", "rmdir")
QUERIES = ["Write a Python function that merges two sorted lists.", "Hi there!", "Prove that 7 is prime."]


def _state(router: TagRouter) -> tuple:
    return (
        router.decider.to_dict(),
        router.table.tags,
        router.table.counts.tobytes(),
        [d.model for d in router.route_batch(QUERIES)],
    )


def _fingerprint(folder: Path) -> str:
    """A digest of the live version's files (paths and bytes): equal digests load to equal routers."""
    version = live_version(folder)
    digest = hashlib.sha256(str(version.name).encode())
    for path in sorted(p for p in version.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(version)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _save_and_crash_at(router: TagRouter, folder: Path, crash_at: int) -> int:
    """Save ``router`` into ``folder`` in a child that dies before its ``crash_at``-th file-system call;
    returns the child's exit status (17: crashed, 0: the save completed first)."""
    pid = os.fork()
    if pid == 0:  # the child: count the calls, die at the chosen one
        try:
            calls = 0

            def crashing(real):
                def call(*args, **kwargs):
                    nonlocal calls
                    calls += 1
                    if calls >= crash_at:
                        os._exit(17)
                    return real(*args, **kwargs)

                return call

            for name in CRASH_POINTS:
                setattr(os, name, crashing(getattr(os, name)))
            router.save(folder)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 120  # generous; a child stuck on a lock another thread held at the fork
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the saving child hung (crash point {crash_at})")
        time.sleep(0.005)
    return os.waitstatus_to_exitcode(done[1])


def test_a_crash_at_any_point_of_a_save_leaves_the_old_or_the_new_router(example_router, tmp_path):
    old = example_router.with_decider(Decider("within", 0.02))
    new = old.update(
        [
            HistoryRecord(query_id=f"n{i}", query=q, model="small-7b", outcome="win")
            for i, q in enumerate(QUERIES)
        ]
    ).with_decider(Decider("utility", 40.0))
    old_state, new_state = _state(old), _state(new)
    assert old_state != new_state
    pristine = tmp_path / "pristine"
    old.save(pristine)
    seen = {"old": 0, "new": 0}
    loaded_states: dict[str, tuple] = {}  # fingerprint -> state, so that equal bytes are loaded once
    crash_at = 1
    while True:
        folder = tmp_path / f"crash-{crash_at}"
        shutil.copytree(pristine, folder)
        status = _save_and_crash_at(new, folder, crash_at)
        key = _fingerprint(folder)
        if key not in loaded_states:
            loaded_states[key] = _state(TagRouter.load(folder))  # never fails: a complete version is live
        state = loaded_states[key]
        assert state in (old_state, new_state), f"a mix after a crash at call {crash_at}"
        seen["old" if state == old_state else "new"] += 1
        if status == 0:
            break
        assert status == 17
        if crash_at % 8 == 1:  # now and then: a later save over the debris of the crash works
            new.save(folder)
            assert _state(TagRouter.load(folder)) == new_state
        shutil.rmtree(folder)
        crash_at += 1
        assert crash_at < 500, "the save never completed"
    # not vacuous: crashes landed both before and after the switch to the new version
    assert seen["old"] >= 10 and seen["new"] >= 1, seen
    assert np.array_equal(TagRouter.load(folder).table.counts, new.table.counts)
