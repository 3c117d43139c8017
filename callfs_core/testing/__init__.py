"""Contract suites for the ports, importable by third parties.

A new adapter is contract-tested by subclassing the suite of its port in a
test module and overriding one fixture (fsspec's abstract-tests style)::

    from callfs_core.testing import BlobBackendContract

    class TestMyBackend(BlobBackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(...)

Capability differences are declared as fixtures the subclass overrides (see
each suite's docstring), never as skips. The suites need ``pytest`` and the
``anyio`` pytest plugin (installed with anyio).
"""

import pytest

# Plain ``assert`` in the suites gets pytest's detailed failure messages.
pytest.register_assert_rewrite(
    "callfs_core.testing.blobs",
    "callfs_core.testing.locks",
    "callfs_core.testing.metadata",
    "callfs_core.testing.signer",
)

from callfs_core.testing.blobs import BlobBackendContract  # noqa: E402
from callfs_core.testing.locks import LockContract, SharedLockContract  # noqa: E402
from callfs_core.testing.metadata import MetadataContract  # noqa: E402
from callfs_core.testing.signer import LinkSignerContract  # noqa: E402

__all__ = [
    "BlobBackendContract",
    "LinkSignerContract",
    "LockContract",
    "MetadataContract",
    "SharedLockContract",
]
