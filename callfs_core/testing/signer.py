"""The ``LinkSigner`` (and link token id) contract suite (api.md §4.1).

Subclass :class:`LinkSignerContract` and override ``signer`` (and
``id_generator``, the ``IdGenerator`` whose ids the signer signs).
"""

from __future__ import annotations

import base64
import re

import pytest

from callfs_core.ports import IdGenerator, LinkSigner
from callfs_core.testing._support import p

__all__ = ["LinkSignerContract"]

_URLSAFE_PADDED = re.compile(r"^[A-Za-z0-9_-]+=*$")


class LinkSignerContract:
    """Tests every ``LinkSigner`` must pass. Override ``signer`` and ``id_generator``."""

    @pytest.fixture
    def signer(self) -> LinkSigner:
        raise NotImplementedError("override the `signer` fixture")

    @pytest.fixture
    def id_generator(self) -> IdGenerator:
        raise NotImplementedError("override the `id_generator` fixture")

    def test_round_trip(self, signer: LinkSigner, id_generator: IdGenerator) -> None:
        token_id = id_generator.token_id()
        for path in (p("/a.txt"), p("/dir with spaces/é ａ😀.txt"), p("/")):
            signature = signer.sign(token_id, path)
            assert signer.verify(token_id, path, signature)
            assert signer.sign(token_id, path) == signature

    def test_signature_format(self, signer: LinkSigner, id_generator: IdGenerator) -> None:
        signature = signer.sign(id_generator.token_id(), p("/a.txt"))
        assert len(signature) == 44
        assert signature.endswith("=")
        assert _URLSAFE_PADDED.match(signature)
        assert len(base64.urlsafe_b64decode(signature)) == 32

    def test_token_id_format(self, id_generator: IdGenerator) -> None:
        ids = {id_generator.token_id() for _ in range(200)}
        assert len(ids) == 200
        for token_id in ids:
            assert len(token_id) == 24
            assert token_id.endswith("==")
            assert _URLSAFE_PADDED.match(token_id)
            assert len(base64.urlsafe_b64decode(token_id)) == 16

    def test_token_length(self, signer: LinkSigner, id_generator: IdGenerator) -> None:
        token_id = id_generator.token_id()
        token = f"{token_id}.{signer.sign(token_id, p('/f'))}"
        assert len(token) == 69
        assert token.split(".", 1)[0] == token_id

    def test_tampering_fails(self, signer: LinkSigner, id_generator: IdGenerator) -> None:
        token_id = id_generator.token_id()
        other_id = id_generator.token_id()
        path = p("/reports/q1.pdf")
        signature = signer.sign(token_id, path)
        assert not signer.verify(token_id, p("/reports/q2.pdf"), signature)
        assert not signer.verify(token_id, p("/reports"), signature)
        assert not signer.verify(other_id, path, signature)
        assert not signer.verify(token_id, path, signer.sign(other_id, path))
        flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
        assert not signer.verify(token_id, path, flipped)
        assert not signer.verify(token_id, path, signature[:-1])
        assert not signer.verify(token_id, path, signature + "=")
        assert not signer.verify(token_id, path, "")

    def test_malformed_signatures_are_rejected_without_error(
        self, signer: LinkSigner, id_generator: IdGenerator
    ) -> None:
        token_id = id_generator.token_id()
        path = p("/f")
        for garbage in ("é" * 44, "\ud800" * 44, "not base64 at all!", "=" * 44, "\x00" * 44):
            assert not signer.verify(token_id, path, garbage)
        assert not signer.verify("\ud800", path, signer.sign(token_id, path))

    def test_token_id_and_path_boundary_matters(
        self, signer: LinkSigner, id_generator: IdGenerator
    ) -> None:
        # token_id + path is signed as one string; ids have a fixed length, so
        # two different (id, path) pairs never concatenate to the same text.
        first = id_generator.token_id()
        second = id_generator.token_id()
        assert signer.sign(first, p("/a")) != signer.sign(second, p("/a"))
        assert signer.sign(first, p("/a")) != signer.sign(first, p("/b"))
