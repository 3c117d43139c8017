"""Small helpers for the throwaway processes tests start (servers under test, databases)."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
from collections.abc import Callable

__all__ = ["dies_with_parent", "free_port"]

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def dies_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` making the child receive ``sig`` when the starting thread
    ends (PR_SET_PDEATHSIG), so a killed test run leaves no server behind."""

    def arrange() -> None:  # runs in the child between fork and exec
        with contextlib.suppress(OSError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return arrange
