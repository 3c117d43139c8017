"""The real clock and random token ids (``Clock`` and ``IdGenerator`` ports)."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from callfs_core.ports import Clock, IdGenerator

__all__ = ["RandomIdGenerator", "SystemClock"]


class SystemClock:
    """The wall clock, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class RandomIdGenerator:
    """Link token ids: URL-safe base64 with padding of 16 random bytes (24 characters)."""

    def token_id(self) -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii")


_clock: type[Clock] = SystemClock
_ids: type[IdGenerator] = RandomIdGenerator
