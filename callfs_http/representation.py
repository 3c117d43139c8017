"""How inodes, listings and links look on the wire (api.md §1.6, §2.10, §2.11)."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from callfs_core.engine import Listing
from callfs_core.model import Inode, Link

__all__ = [
    "content_disposition",
    "dumps",
    "file_info",
    "http_date",
    "inode_headers",
    "link_body",
    "listing_body",
    "parse_http_date",
    "rfc3339",
]


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON without a trailing newline."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# Formatting dates and digests is a good part of a small GET's cost; a read
# mostly repeats the last ones.
@functools.lru_cache(maxsize=4096)
def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=4096)
def http_date(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC).replace(microsecond=0), usegmt=True)


@functools.lru_cache(maxsize=4096)
def repr_digest(sha256_hex: str) -> str:
    """The ``Repr-Digest`` value (RFC 9530) of a hex SHA-256."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def parse_http_date(value: str | None) -> datetime | None:
    """An IMF-fixdate (or obsolete form); ``None`` when absent or unparsable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def mode_text(mode: int) -> str:
    return f"{mode:04o}"


def file_info(inode: Inode) -> dict[str, Any]:
    return {
        "name": inode.path.name,
        "path": str(inode.path),
        "type": inode.kind.value,
        "size": inode.size if inode.is_file else 0,
        "mode": mode_text(inode.mode),
        "owner": inode.owner,
        "group": inode.group,
        "mtime": rfc3339(inode.mtime),
        "sha256": inode.sha256 if inode.is_file else None,
    }


def inode_headers(inode: Inode) -> dict[str, str]:
    """The ``X-CallFS-*`` headers plus, for files, the validators and digest."""
    headers = {
        "X-CallFS-Type": inode.kind.value,
        "X-CallFS-Size": str(inode.size if inode.is_file else 0),
        "X-CallFS-Mode": mode_text(inode.mode),
        "X-CallFS-Owner": inode.owner,
        "X-CallFS-Group": inode.group,
        "X-CallFS-MTime": rfc3339(inode.mtime),
    }
    if inode.instance_id:
        headers["X-CallFS-Instance-ID"] = inode.instance_id
    if inode.is_file and inode.sha256:
        headers["X-CallFS-SHA256"] = inode.sha256
        headers["ETag"] = f'"{inode.sha256}"'
        headers["Last-Modified"] = http_date(inode.mtime)
        headers["Repr-Digest"] = repr_digest(inode.sha256)
    return headers


def listing_body(listing: Listing, *, recursive: bool, max_depth: int) -> dict[str, Any]:
    body: dict[str, Any] = {"path": str(listing.directory.path), "type": "directory"}
    body["recursive"] = recursive
    if recursive and max_depth != 0:
        body["max_depth"] = max_depth
    body["count"] = len(listing.items)
    body["items"] = [file_info(i) for i in listing.items]
    body["next"] = str(listing.next) if listing.next is not None else None
    return body


def link_url(external_url: str, token: str) -> str:
    base = external_url.strip()
    scheme = "http" if base.startswith("http://") else "https"
    for prefix in ("http://", "https://"):
        if base.startswith(prefix):
            base = base[len(prefix) :]
    return f"{scheme}://{base.rstrip('/')}/download/{token}"


def link_body(link: Link, external_url: str) -> dict[str, str]:
    return {
        "url": link_url(external_url, link.token),
        "token": link.token,
        "expires": link.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


_ATTR_CHARS = "!#$&+-.^_`|~"


def content_disposition(name: str) -> str:
    ascii_name = "".join("_" if not " " <= ch <= "~" or ch in '"\\' else ch for ch in name)
    encoded = quote(name, safe=_ATTR_CHARS)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"
