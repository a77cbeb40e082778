"""Atomic writes after a kill -9: the previous version survives, and the next write of the
same target clears what the killed one left (issue 17)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from brstnet.atomic import atomic_file, atomic_folder
from brstnet.processes import Owner, this_host

KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from brstnet.atomic import atomic_file, atomic_folder

    with atomic_folder(sys.argv[1]) as tmp:
        (tmp / "patches.npy").write_bytes(b"new" * 1000)
        with atomic_file(sys.argv[2]) as part:
            part.write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _write_store(path: Path, content: bytes) -> None:
    with atomic_folder(path) as tmp:
        (tmp / "patches.npy").write_bytes(content)


def _dead_owner() -> Owner:
    """The owner token of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    started = int(psutil.Process(proc.pid).create_time())
    proc.wait()
    return Owner(this_host(), proc.pid, started)


def test_a_killed_write_keeps_the_old_version_and_the_next_write_clears_its_leftovers(
    tmp_path: Path,
) -> None:
    """Failed before: `.patch_store.<random>/` and `.inner0.pt.<random>.tmp` stayed forever."""
    store, checkpoint = tmp_path / "patch_store", tmp_path / "inner0.pt"
    _write_store(store, b"old")
    checkpoint.write_bytes(b"old checkpoint")
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(store), str(checkpoint)], timeout=60
    )
    assert done.returncode == -9
    # the kill left the previous versions in place, and its temporary files beside them
    assert (store / "patches.npy").read_bytes() == b"old"
    assert checkpoint.read_bytes() == b"old checkpoint"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert len(leftovers) == 2
    assert leftovers[0].startswith(".inner0.pt.") and leftovers[0].endswith(".tmp")
    assert leftovers[1].startswith(".patch_store.")

    with atomic_file(checkpoint) as tmp:
        tmp.write_bytes(b"new checkpoint")
    _write_store(store, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner0.pt", "patch_store"]
    assert checkpoint.read_bytes() == b"new checkpoint"
    assert (store / "patches.npy").read_bytes() == b"new"


def test_a_leftover_old_folder_does_not_block_later_saves(tmp_path: Path) -> None:
    """Failed before: a `.patch_store.old` left by a kill made every later save fail."""
    store = tmp_path / "patch_store"
    _write_store(store, b"first")
    (tmp_path / ".patch_store.old").mkdir()
    (tmp_path / ".patch_store.old" / "patches.npy").write_bytes(b"older")
    _write_store(store, b"second")
    assert (store / "patches.npy").read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch_store"]


def test_a_kill_between_the_two_renames_restores_the_previous_folder(tmp_path: Path) -> None:
    store = tmp_path / "patch_store"
    old = tmp_path / f".patch_store.{_dead_owner().token}.k2j4h1.old"
    old.mkdir()
    (old / "patches.npy").write_bytes(b"previous")
    with atomic_file(tmp_path / "patch_store.json") as tmp:  # another target: untouched
        tmp.write_text("{}")
    assert old.is_dir() and not store.exists()
    with atomic_folder(store) as tmp:
        assert (store / "patches.npy").read_bytes() == b"previous"  # back before the new one
        (tmp / "patches.npy").write_bytes(b"new")
    assert (store / "patches.npy").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch_store", "patch_store.json"]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    live = tmp_path / f".metrics.json.{Owner.current().token}.abc123.tmp"
    live.write_text("being written")
    elsewhere = tmp_path / f".metrics.json.{'other-host'}~{1}~{1}.abc123.tmp"
    elsewhere.write_text("another machine's")
    dead = tmp_path / f".metrics.json.{_dead_owner().token}.abc123.tmp"
    dead.write_text("killed")
    with atomic_file(target) as tmp:
        tmp.write_text("{}")
    assert live.exists() and elsewhere.exists() and not dead.exists()
