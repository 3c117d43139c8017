"""Several worker processes behave as one server: locks, single use, rate limits, metrics."""

from __future__ import annotations

import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from conftest import Server, base_config, merge

WORKERS = 2


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Any:

    folder = tmp_path_factory.mktemp("workers")
    config = merge(
        base_config(folder),
        {
            "server": {"workers": WORKERS},
            "rate_limit": {"generate_rps": 0, "download_rps": 0.001, "download_burst": 3},
        },
    )
    handle = Server(folder, config)
    handle.start()
    yield handle
    assert handle.stop() == 0  # graceful shutdown of the supervisor and its workers


def fresh_request(server: Server, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request on its own connection, so the kernel may pick any worker."""
    with server.client("alice") as client:
        return client.request(method, path, **kwargs)


def test_connections_reach_every_worker(workers_server: Server) -> None:
    # The server counts as started when its first worker answers; the others
    # may still be importing, so keep sending batches for a while.
    deadline = time.monotonic() + 20
    pids: set[str] = set()
    while len(pids) < WORKERS and time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(lambda _: fresh_request(workers_server, "GET", "/health"), range(40))
            )
        assert {r.status_code for r in statuses} == {200}
        metric_files = os.listdir(workers_server.data_dir / "run" / "metrics")
        pids = {m.group(1) for f in metric_files if (m := re.match(r"counter_(\d+)\.db", f))}
    assert len(pids) == WORKERS, metric_files


def test_concurrent_puts_across_workers(workers_server: Server) -> None:
    bodies = [bytes([i]) * (200_000 + i) for i in range(30)]

    def put(body: bytes) -> int:
        return fresh_request(
            workers_server, "PUT", "/v1/files/workers/race.bin", content=body
        ).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(put, bodies))
    assert set(statuses) <= {200, 201}
    assert statuses.count(201) == 1
    got = fresh_request(workers_server, "GET", "/v1/files/workers/race.bin")
    assert got.content in bodies
    assert got.headers["x-callfs-sha256"] == hashlib.sha256(got.content).hexdigest()
    on_disk = workers_server.storage.read("workers/race.bin")
    assert on_disk == got.content


def test_single_use_across_workers(workers_server: Server) -> None:
    assert (
        fresh_request(workers_server, "PUT", "/v1/files/workers/once.txt", content=b"x").status_code
        == 201
    )
    link = fresh_request(
        workers_server,
        "POST",
        "/v1/links/generate",
        json={"path": "/workers/once.txt", "expiry_seconds": 60},
    ).json()
    # The download limiter admits 3 per IP in total: spend them on racing GETs.
    with ThreadPoolExecutor(3) as pool:
        statuses = sorted(
            pool.map(
                lambda _: (
                    fresh_request(workers_server, "GET", f"/download/{link['token']}").status_code
                ),
                range(3),
            )
        )
    assert statuses == [200, 410, 410]
    # The buckets are shared: every further download is refused, whichever worker answers.
    refused = [fresh_request(workers_server, "GET", f"/download/{link['token']}") for _ in range(6)]
    assert {r.status_code for r in refused} == {429}
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)


def test_metrics_add_up_across_workers(workers_server: Server) -> None:
    def count() -> float:
        text = httpx.get(f"http://{workers_server.config['metrics']['listen_addr']}/metrics").text
        pattern = (
            r'callfs_http_requests_total\{method="HEAD",path="/health",status_code="200"\} (\S+)'
        )
        match = re.search(pattern, text)
        return float(match.group(1)) if match else 0.0

    before = count()
    for _ in range(12):
        assert fresh_request(workers_server, "HEAD", "/health").status_code == 200
    assert count() - before == 12
