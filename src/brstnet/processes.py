"""Which process owns a temporary file or a tracking run, and whether it is still alive.

A process is named by host, pid and start time (the start time tells a live process from
a later one that got the same pid). Leftovers of a killed process (temporary files, MLflow
runs left RUNNING) are recognised by an owner on this host that is gone; an owner on
another host is never judged from here.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from functools import cache

import psutil

_HIDDEN = -1  # a process whose start time we may not read: alive
_TOKEN = re.compile(r"^(?P<host>[A-Za-z0-9-]+)~(?P<pid>\d+)~(?P<started>\d+)$")


@cache
def this_host() -> str:
    """The host name, reduced to letters, digits and "-" (safe in file names)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "localhost"


@dataclass(frozen=True)
class Owner:
    """A process: host, pid and start time (whole seconds since the epoch)."""

    host: str
    pid: int
    started: int

    @classmethod
    def current(cls) -> Owner:
        return cls(this_host(), os.getpid(), _start_time(os.getpid()) or 0)

    @property
    def token(self) -> str:
        """``host~pid~started``: the owner in a file name or a tag."""
        return f"{self.host}~{self.pid}~{self.started}"

    @classmethod
    def parse(cls, token: str) -> Owner | None:
        """The owner in ``token`` (see :attr:`token`), or None if it is not one."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        return cls(match["host"], int(match["pid"]), int(match["started"]))

    @property
    def local(self) -> bool:
        return self.host == this_host()

    def gone(self) -> bool:
        """True only for a process of this host that no longer runs (its pid is free, or
        taken by a process started at another time). Another host's process: False."""
        if not self.local:
            return False
        started = _start_time(self.pid)
        if started == _HIDDEN:
            return False
        return started is None or started != self.started


def _start_time(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # it exists; its start time is hidden from us
        return _HIDDEN
