"""The in-memory metadata fake passes the MetadataPort contract."""

from __future__ import annotations

import pytest

from callfs_adapters.memory_metadata import InMemoryMetadataStore
from callfs_core.testing import MetadataContract


class TestInMemoryMetadata(MetadataContract):
    @pytest.fixture
    def store(self) -> InMemoryMetadataStore:
        return InMemoryMetadataStore()
