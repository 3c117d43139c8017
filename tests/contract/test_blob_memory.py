"""The in-memory blob fake passes the BlobBackendPort contract."""

from __future__ import annotations

import pytest

from callfs_adapters.memory_blob import InMemoryBlobBackend
from callfs_core.testing import BlobBackendContract


class TestInMemoryBlobs(BlobBackendContract):
    @pytest.fixture
    def backend(self) -> InMemoryBlobBackend:
        return InMemoryBlobBackend()
