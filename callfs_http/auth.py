"""API-key authentication (api.md §1.4): a key becomes an :class:`Identity`."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

import attrs

from callfs_core.errors import AuthenticationFailed
from callfs_core.model import Identity

__all__ = ["INTERNAL_PROXY_USER", "Authenticator", "build_identities"]

INTERNAL_PROXY_USER = "internal-proxy"


def build_identities(
    *,
    api_keys: Sequence[str],
    api_key_users: Mapping[str, str],
    internal_proxy_secret: str,
    groups: Mapping[str, Sequence[str]],
    admin_users: Sequence[str],
) -> list[tuple[bytes, Identity]]:
    """Pair every configured key with its identity, in configuration order."""
    admins = set(admin_users)

    def identity(user: str, admin: bool = False) -> Identity:
        member_of = frozenset(g for g, users in groups.items() if user in users) | {user}
        return Identity(user=user, groups=member_of, admin=admin or user in admins)

    pairs: list[tuple[bytes, Identity]] = []
    positional = [k for k in api_keys if k]
    for index, key in enumerate(positional):
        pairs.append((key.encode(), identity(f"api-user-{index}")))
    for user, key in api_key_users.items():
        if key:
            pairs.append((key.encode(), identity(user)))
    if internal_proxy_secret:
        # Only instances of a cluster hold the secret: their requests are
        # forwarded ones, never forwarded again (api.md §1.10).
        proxy = attrs.evolve(identity(INTERNAL_PROXY_USER, admin=True), forwarded=True)
        pairs.append((internal_proxy_secret.encode(), proxy))
    return pairs


class Authenticator:
    """Resolves an ``Authorization`` header to an identity, in constant time per key."""

    def __init__(self, pairs: Sequence[tuple[bytes, Identity]]) -> None:
        self._pairs = list(pairs)
        self.users = {identity.user for _, identity in self._pairs}

    def authenticate(self, header: str | None) -> Identity:
        if not header:
            raise AuthenticationFailed()
        token = header[7:] if header.startswith("Bearer ") else header
        token = token.strip()
        if not token:
            raise AuthenticationFailed()
        candidate = token.encode()
        found: Identity | None = None
        # Compare against every key so the time taken does not reveal which matched.
        for key, identity in self._pairs:
            if hmac.compare_digest(candidate, key) and found is None:
                found = identity
        if found is None or found.user == "root":
            raise AuthenticationFailed()
        return found

    def acting_as(self, user: str) -> Identity:
        """The identity of a request forwarded by another instance on behalf of
        ``user`` (api.md §1.10): that user, with its groups, with admin rights,
        marked as forwarded (never forwarded again)."""
        known = next((identity for _, identity in self._pairs if identity.user == user), None)
        base = known or Identity(user=user, groups=frozenset({user}))
        return attrs.evolve(base, admin=True, forwarded=True)
