"""``callfs server``: build the object graph and serve it with Hypercorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

import hypercorn.asyncio.tcp_server
from hypercorn.asyncio import serve
from hypercorn.config import Config
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from callfs_cli.config_model import Settings
from callfs_cli.container import Container, UnsupportedConfiguration
from callfs_cli.logs import configure_logging
from callfs_cli.quickstart import QuickstartInfo, banner, server_url
from callfs_core.engine import Engine
from callfs_core.errors import CallFSError

__all__ = ["run"]

log = logging.getLogger("callfs.server")

# Hypercorn reads the socket 64 KiB at a time; 1 MiB reads make uploads
# markedly faster (design.md §5) at no cost for small requests.
hypercorn.asyncio.tcp_server.MAX_RECV = 2**20

LINK_CLEANUP_INTERVAL = 300.0
LINK_CLEANUP_BUDGET = 30.0
RATE_LIMIT_SWEEP_INTERVAL = 300.0


def bind_address(listen_addr: str) -> str:
    """``:8443`` -> ``0.0.0.0:8443``; ``host:port`` and ``[v6]:port`` unchanged."""
    host, _, port = listen_addr.strip().rpartition(":")
    return f"{host or '0.0.0.0'}:{port}"


def hypercorn_config(settings: Settings) -> Config:
    server = settings.server
    config = Config()
    config.bind = [bind_address(server.listen_addr)]
    if server.use_tls:
        config.certfile = server.cert_file
        config.keyfile = server.key_file
    config.alpn_protocols = ["h2", "http/1.1"] if server.http2 else ["http/1.1"]
    config.read_timeout = int(server.read_timeout) or None
    config.graceful_timeout = 30.0
    config.keep_alive_timeout = 75.0
    config.accesslog = None
    config.errorlog = logging.getLogger("callfs.hypercorn")
    return config


class MetricsApp:
    """The unauthenticated ``metrics.listen_addr`` listener: only ``/metrics``."""

    def __init__(self, container: Container) -> None:
        self.registry = container.metrics().registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, ctype = 404, b"not found\n", b"text/plain"
        else:
            status, body, ctype = 200, generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _periodic_link_cleanup(engine: Engine, container: Container) -> None:
    while True:
        await asyncio.sleep(LINK_CLEANUP_INTERVAL)
        try:
            async with asyncio.timeout(LINK_CLEANUP_BUDGET):
                removed = await engine.cleanup_links()
            log.info("link cleanup removed %d records", removed)
        except (CallFSError, TimeoutError):
            container.metrics().errors.labels("links", "cleanup_failed").inc()
            log.warning("link cleanup failed", exc_info=True)


async def _periodic_rate_limit_sweep(container: Container) -> None:
    services = container.app().state.services
    while True:
        await asyncio.sleep(RATE_LIMIT_SWEEP_INTERVAL)
        services.generate_limiter.sweep()
        services.download_limiter.sweep()


async def serve_forever(settings: Settings, container: Container) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metadata = container.raw_metadata()
    await metadata.open()  # type: ignore[attr-defined]
    try:
        engine = container.engine()
        await engine.start()
        app = container.app()
        tasks = [
            asyncio.create_task(_periodic_link_cleanup(engine, container)),
            asyncio.create_task(_periodic_rate_limit_sweep(container)),
        ]
        servers = [serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)]  # type: ignore[arg-type]
        if settings.metrics.listen_addr:
            metrics_config = Config()
            metrics_config.bind = [bind_address(settings.metrics.listen_addr)]
            metrics_config.accesslog = None
            metrics_config.errorlog = logging.getLogger("callfs.hypercorn")
            servers.append(serve(MetricsApp(container), metrics_config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        try:
            await asyncio.gather(*servers)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await metadata.close()


def run(settings: Settings, info: QuickstartInfo | None, warnings: Sequence[str] = ()) -> int:
    """Start the API (and metrics) listeners; return the process exit code."""
    configure_logging(settings.log.level, settings.log.format)
    for warning in warnings:
        log.warning("%s", warning)
    container = Container(settings=settings)
    try:
        container.backends()
        container.raw_metadata()
        container.locks()
    except UnsupportedConfiguration as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    info = info or QuickstartInfo(url=server_url(settings))
    print(banner(settings, info), file=sys.stderr, flush=True)
    try:
        asyncio.run(serve_forever(settings, container))
    except OSError as exc:
        print(f"Error: cannot start the server: {exc}", file=sys.stderr)
        return 1
    except CallFSError as exc:
        print(f"Error: cannot start the server: {exc.message}", file=sys.stderr)
        return 1
    return 0
