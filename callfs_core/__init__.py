"""CallFS core: the domain of a filesystem served over a REST API.

Pure: no I/O, no framework, no database driver. Adapters implement the ports
in :mod:`callfs_core.ports`; :class:`Engine` runs the use cases::

    engine = Engine(metadata=..., backends={"localfs": ...}, locks=..., signer=...,
                    clock=..., ids=..., config=EngineConfig(instance_id="me"))
    await engine.start()
    await engine.write_file(identity, FsPath.from_body("/a.txt"), chunks,
                            write_mode=WriteMode.CREATE)
"""

from callfs_core.engine import Digests, Engine, EngineConfig, Listing, ReadResult, WriteResult
from callfs_core.model import (
    BlobInfo,
    ByteRange,
    Identity,
    Inode,
    Kind,
    Link,
    LinkStatus,
    Preconditions,
    ReadOptions,
    WriteMode,
)
from callfs_core.paths import ROOT, FsPath
from callfs_core.ports import (
    BlobBackendPort,
    BlobReader,
    Clock,
    IdGenerator,
    LinkSigner,
    LockPort,
    MetadataPort,
    StagedBlob,
)

__all__ = [
    "ROOT",
    "BlobBackendPort",
    "BlobInfo",
    "BlobReader",
    "ByteRange",
    "Clock",
    "Digests",
    "Engine",
    "EngineConfig",
    "FsPath",
    "IdGenerator",
    "Identity",
    "Inode",
    "Kind",
    "Link",
    "LinkSigner",
    "LinkStatus",
    "Listing",
    "LockPort",
    "MetadataPort",
    "Preconditions",
    "ReadOptions",
    "ReadResult",
    "StagedBlob",
    "WriteMode",
    "WriteResult",
]
