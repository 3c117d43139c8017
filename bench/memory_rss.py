"""Peak server memory while streaming a large file up and down.

Starts a real ``callfs server`` (``python -m callfs_cli server``, Hypercorn, TLS with the
certificate the server generates itself) in a temporary folder, uploads ``--size-mib``
MiB streamed from a generator (the client never holds the file), downloads it streaming
(discarding the data, checking its SHA-256) and samples the server's RSS (``VmRSS`` of
the server process and all its descendants, every 50 ms). Prints the peak RSS and the
upload and download rates; exits 1 when the peak is at or above ``--limit-mib``
(default 150).

    .venv/bin/python bench/memory_rss.py [--size-mib 1024] [--limit-mib 150] [--workers 1]

``tests/integration/test_memory.py`` imports :func:`measure` from this file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# The server start-up is shared with the integration tests: tests/integration/serverproc.py
# (which, unlike their conftest.py, imports neither pytest nor the OpenAPI checker).
TESTS = Path(__file__).resolve().parents[1] / "tests"
for folder in (TESTS / "integration", TESTS / "support"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from procutil import free_port  # noqa: E402
from serverproc import ServerProcess  # noqa: E402

MIB = 1024 * 1024
CHUNK = MIB
SAMPLE_INTERVAL = 0.05
API_KEY = "bench-key-0123456789abcdef"


# --------------------------------------------------------------------------- server


class BenchServer(ServerProcess):
    """``callfs server`` with a minimal configuration in ``folder``."""

    def __init__(
        self, folder: Path, workers: int = 1, backend: dict[str, Any] | None = None
    ) -> None:
        config: dict[str, Any] = {
            "server": {
                "listen_addr": f"127.0.0.1:{free_port()}",
                "data_dir": str(folder / "data"),
                "workers": workers,
            },
            "auth": {
                "api_key_users": {"bench": API_KEY},
                "internal_proxy_secret": "bench-internal-secret",
                "single_use_link_secret": "bench-link-secret",
            },
            "metrics": {"listen_addr": ""},
            "log": {"level": "warn", "format": "console"},
        }
        if backend:
            config["backend"] = backend
        super().__init__(folder, config)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            verify=False,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60.0,
        )


# --------------------------------------------------------------------------- RSS sampling


def _children(pid: int) -> list[int]:
    result: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return result
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as stream:
                result += [int(c) for c in stream.read().split()]
        except OSError:
            pass
    return result


def _vm_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` plus every descendant process."""
    total, pending, seen = 0, [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _vm_rss_kib(current) * 1024
        pending += _children(current)
    return total


class RssSampler:
    """Samples :func:`tree_rss_bytes` every 50 ms in a thread; ``peak`` is the maximum."""

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(self.pid))


# --------------------------------------------------------------------------- transfer


def generated_content(size: int, digest: Any) -> Iterator[bytes]:
    """``size`` bytes in 1 MiB chunks: one random block, each copy stamped with its index
    (so no two chunks are equal); ``digest`` is updated as the chunks are produced."""
    block = bytearray(os.urandom(CHUNK))
    sent, index = 0, 0
    while sent < size:
        block[:8] = index.to_bytes(8, "big")
        chunk = bytes(block[: min(CHUNK, size - sent)])
        digest.update(chunk)
        sent += len(chunk)
        index += 1
        yield chunk


@dataclass
class Result:
    size_bytes: int
    baseline_rss_bytes: int
    peak_rss_bytes: int
    upload_seconds: float
    download_seconds: float
    samples: int

    @property
    def upload_mb_s(self) -> float:
        return self.size_bytes / 1e6 / self.upload_seconds

    @property
    def download_mb_s(self) -> float:
        return self.size_bytes / 1e6 / self.download_seconds

    def report(self) -> str:
        return (
            f"size:          {self.size_bytes / MIB:.0f} MiB\n"
            f"baseline RSS:  {self.baseline_rss_bytes / MIB:.1f} MiB\n"
            f"peak RSS:      {self.peak_rss_bytes / MIB:.1f} MiB ({self.samples} samples)\n"
            f"upload:        {self.upload_mb_s:.1f} MB/s ({self.upload_seconds:.1f} s)\n"
            f"download:      {self.download_mb_s:.1f} MB/s ({self.download_seconds:.1f} s)"
        )


def measure(
    size_mib: int = 1024,
    folder: Path | None = None,
    workers: int = 1,
    backend: dict[str, Any] | None = None,
) -> Result:
    """Start a server, stream ``size_mib`` MiB up and down, return the figures.

    ``backend``: the server's ``backend`` settings (default: localfs in its data folder).

    Raises AssertionError when a transfer fails or the downloaded bytes differ.
    """
    with tempfile.TemporaryDirectory(prefix="callfs-bench-", dir=folder) as tmp:
        server = BenchServer(Path(tmp), workers, backend)
        server.start(timeout=30.0)
        try:
            assert server.process is not None
            return _transfer(server, server.process.pid, size_mib * MIB)
        finally:
            server.stop()


def _transfer(server: BenchServer, pid: int, size: int) -> Result:
    with server.client() as client:
        client.get("/health")
        baseline = tree_rss_bytes(pid)
        with RssSampler(pid) as sampler:
            sent = hashlib.sha256()
            start = time.perf_counter()
            response = client.put(
                "/v1/files/bench/big.bin",
                content=generated_content(size, sent),
                headers={"Content-Length": str(size)},
            )
            upload_seconds = time.perf_counter() - start
            assert response.status_code == 201, response.text
            expected = sent.hexdigest()
            assert response.headers["x-callfs-sha256"] == expected

            received = hashlib.sha256()
            count = 0
            start = time.perf_counter()
            with client.stream("GET", "/v1/files/bench/big.bin") as download:
                assert download.status_code == 200
                assert download.headers["x-callfs-sha256"] == expected
                for chunk in download.iter_raw(CHUNK):
                    received.update(chunk)
                    count += len(chunk)
            download_seconds = time.perf_counter() - start
            assert count == size, (count, size)
            assert received.hexdigest() == expected, "downloaded content differs"
    return Result(size, baseline, sampler.peak, upload_seconds, download_seconds, sampler.samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument(
        "--limit-mib", type=int, default=150, help="fail when peak RSS >= this (default 150)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server.workers (default 1; RSS sums all)"
    )
    args = parser.parse_args(argv)
    result = measure(args.size_mib, workers=args.workers)
    print(result.report())
    if result.peak_rss_bytes >= args.limit_mib * MIB:
        print(f"FAIL: peak RSS >= {args.limit_mib} MiB")
        return 1
    print(f"OK: peak RSS < {args.limit_mib} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
