"""Logging set-up: JSON lines (``log.format=json``) or human-readable console,
and the redaction of every configured secret from every record.

Each request writes one line to the ``callfs.access`` logger (see
:mod:`callfs_http.middleware`); its fields are record attributes, which the
JSON format writes as keys of their own.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from callfs_cli.config_model import Settings

__all__ = ["JsonFormatter", "SecretRedactor", "configure_logging", "secrets_of"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD_ATTRIBUTES: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}
REDACTED: Final = "***"
# Shorter values are not searched for: replacing every "ab" would make logs
# unreadable (configuration validation already requires keys of 16+ bytes).
MIN_SECRET_LENGTH: Final = 4
_EXCEPTION_FORMATTER: Final = logging.Formatter()
# One encoder for every record (json.dumps with options builds a new one per call).
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, default=str)
_DSN_PASSWORD: Final = re.compile(r"""password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]+)""")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ``extra``
    fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["error"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return _ENCODER.encode(entry)


class SecretRedactor(logging.Filter):
    """Replaces every known secret by ``***`` in the message, the exception text,
    the stack and the string ``extra`` fields of each record, before any
    formatter sees it: a defence in depth behind code that never logs secrets
    on purpose (a driver's error message quoting its connection string, say)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        usable = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, usable))) if usable else None

    def redact(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        try:
            message: str | None = record.getMessage()
        except Exception:  # a malformed call: the handler reports it when formatting
            message = None
        else:
            record.msg, record.args = message, None  # formatted once, here
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXCEPTION_FORMATTER.formatException(record.exc_info)
        extras = [
            key
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and isinstance(value, str)
        ]
        texts = [message or "", record.exc_text or "", record.stack_info or ""]
        texts += [getattr(record, key) for key in extras]
        # One search over everything; most records contain no secret at all.
        if self._pattern.search("\x00".join(texts)) is None:
            return True
        if message is not None:
            record.msg = self.redact(message)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key in extras:
            setattr(record, key, self.redact(getattr(record, key)))
        return True


def _dsn_passwords(dsn: str) -> list[str]:
    """The password of a PostgreSQL DSN, URL (``postgresql://u:p@h/db``) or
    key-value (``host=h password=p``) form, as written and decoded."""
    found: list[str] = []
    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    for match in _DSN_PASSWORD.finditer(dsn):
        value = match.group(1)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found += [value, unquote(value)]
    try:  # libpq's own reading of the DSN, when it can read it
        from psycopg.conninfo import conninfo_to_dict

        parsed = conninfo_to_dict(dsn).get("password")
    except Exception:
        parsed = None
    if isinstance(parsed, str):
        found.append(parsed)
    return found


def secrets_of(settings: Settings) -> list[str]:
    """Every secret of the configuration: API keys, the internal proxy and link
    secrets, the metadata DSN password, Redis passwords, the S3 secret key."""
    auth = settings.auth
    found = [
        *auth.api_keys,
        *auth.api_key_users.values(),
        auth.internal_proxy_secret,
        auth.single_use_link_secret,
        settings.dlm.redis_password,
        settings.metadata_store.redis_password,
        settings.backend.s3_secret_key,
    ]
    if settings.metadata_store.type == "postgres":
        # Only then: the default DSN's password is a common word ("callfs").
        found += _dsn_passwords(settings.metadata_store.dsn)
    return [s for s in found if s]


def configure_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Send every record to standard error, in ``fmt`` (``json`` or console), from
    ``level`` up, with ``secrets`` redacted."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(SecretRedactor(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
