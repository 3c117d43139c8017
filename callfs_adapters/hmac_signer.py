"""HMAC-SHA256 link signatures (api.md §4.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from callfs_core.paths import FsPath
from callfs_core.ports import LinkSigner

__all__ = ["HmacLinkSigner"]


class HmacLinkSigner:
    """Signs ``token_id`` + canonical path with HMAC-SHA256.

    The key is the SHA-256 digest of the configured secret; the signature is
    URL-safe base64 with padding (44 characters).
    """

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the link signing secret must not be empty")
        self._key = hashlib.sha256(secret.encode()).digest()

    def sign(self, token_id: str, path: FsPath) -> str:
        mac = hmac.new(self._key, (token_id + str(path)).encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode("ascii")

    def verify(self, token_id: str, path: FsPath, signature: str) -> bool:
        try:
            expected = self.sign(token_id, path).encode("ascii")
            given = signature.encode()
        except UnicodeEncodeError:  # a lone surrogate in an attacker-supplied value
            return False
        return hmac.compare_digest(expected, given)


_check: type[LinkSigner] = HmacLinkSigner
