"""``callfs server``: build the object graph and serve it.

HTTP/1.1 (the default) is served by uvicorn with its httptools parser on a
uvloop event loop; Hypercorn serves when ``server.http2`` offers HTTP/2. On
these machines a minimal app answers about 5× as many small requests on the
former (bench/README.md, "Tuning log").

With ``server.workers`` = 1 everything runs in this process. With more, this
process becomes a supervisor: it prepares the shared state once (schema, root
inode), starts that many worker processes — each with its own
``SO_REUSEPORT`` listening socket, which spreads connections evenly — serves
the metrics listener from the values all workers write, restarts a worker
that dies, and stops them all on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import ssl
import sys
import time
from collections.abc import Coroutine, Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any, cast

import httptools
import hypercorn.asyncio.tcp_server
import uvicorn
from hypercorn.asyncio import serve
from hypercorn.config import Config
from prometheus_client import CollectorRegistry, generate_latest
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from callfs_adapters.metrics import EXPOSITION_CONTENT_TYPE
from callfs_adapters.sqlite_ratelimit import SqliteRateLimiter
from callfs_adapters.tracing import setup_tracing, shutdown_tracing
from callfs_cli.config_model import Settings
from callfs_cli.container import (
    Container,
    UnsupportedConfiguration,
    check_storage,
    close_resources,
    open_resources,
    rate_limit_path,
    shared_state_dir,
)
from callfs_cli.logs import configure_logging, secrets_of
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
GRACE_PERIOD = 30.0
# A worker that dies this soon after starting failed to start: give up.
STARTUP_WINDOW = 5.0


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a serving process's main coroutine on uvloop (asyncio's loop without it)."""
    try:
        import uvloop
    except ImportError:  # not on every platform
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def bind_address(listen_addr: str) -> str:
    """``:8443`` -> ``0.0.0.0:8443``; ``host:port`` and ``[v6]:port`` unchanged."""
    host, _, port = listen_addr.strip().rpartition(":")
    return f"{host or '0.0.0.0'}:{port}"


def _quiet(config: Config) -> Config:
    config.accesslog = None
    config.errorlog = logging.getLogger("callfs.hypercorn")
    return config


def reuse_port_socket(listen_addr: str, *, reuse_port: bool = True) -> socket.socket:
    """A bound socket; with ``reuse_port`` (SO_REUSEPORT) every worker binds its
    own and the kernel balances connections between them."""
    host, _, port = bind_address(listen_addr).rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, int(port)))
    except BaseException:
        sock.close()
        raise
    return sock


def hypercorn_config(settings: Settings, fd: int | None = None) -> Config:
    """Hypercorn's configuration; ``fd``: an already bound socket it takes over."""
    server = settings.server
    config = _quiet(Config())
    config.bind = [f"fd://{fd}" if fd is not None else bind_address(server.listen_addr)]
    if server.use_tls:
        config.certfile = server.cert_file
        config.keyfile = server.key_file
    # Hypercorn's HTTP/2 is slow for large bodies: offer it only when asked.
    config.alpn_protocols = ["h2", "http/1.1"] if server.http2 else ["http/1.1"]
    config.read_timeout = int(server.read_timeout) or None
    config.graceful_timeout = GRACE_PERIOD
    # Idle keep-alive connections are closed after 5 s; shutdown waits for them.
    config.keep_alive_timeout = 5.0
    return config


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.2+ with the certificate, offering HTTP/1.1 only over ALPN."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


def uvicorn_config(app: object, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for the HTTP/1.1 listener (the socket is ours)."""
    server = settings.server
    tls_factory = None
    if server.use_tls:
        context = server_tls_context(server.cert_file, server.key_file)
        tls_factory = lambda _config, _default: context  # noqa: E731
    return uvicorn.Config(
        cast(Any, app),
        loop="none",  # the worker's loop (uvloop when installed)
        http=_BoundedHttpTools,
        ws="none",
        lifespan="off",  # the container opens and closes the resources
        interface="asgi3",
        log_config=None,
        access_log=False,  # EdgeMiddleware writes the access line
        proxy_headers=False,  # client IP = TCP peer (api.md §1.1)
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(GRACE_PERIOD),
        ssl_context_factory=tls_factory,
    )


# The longest request head (request line and headers) a client may send.
# h11, under Hypercorn, stops at 16 KiB; httptools sets no limit of its own.
MAX_REQUEST_HEAD = 64 * 1024


class _BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request head: a longer
    one is answered 400 and the connection closed (memory stays bounded)."""

    _head_bytes = 0

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_REQUEST_HEAD:
            # Raised inside a parser callback: uvicorn answers 400 and closes.
            raise httptools.HttpParserError("request head too long")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the worker's stop event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_uvicorn(config: uvicorn.Config, sock: socket.socket, stop: asyncio.Event) -> None:
    server = _UvicornServer(config)

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    trigger = asyncio.create_task(stop_when_asked())
    try:
        await server.serve(sockets=[sock])
    finally:
        trigger.cancel()
        sock.close()


class MetricsApp:
    """The unauthenticated ``metrics.listen_addr`` listener: only ``/metrics``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, ctype = 404, b"not found\n", b"text/plain"
        else:
            status, body = 200, generate_latest(self.registry)
            ctype = EXPOSITION_CONTENT_TYPE.encode()
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _serve(app: object, config: Config, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    return serve(cast(Any, app), config, shutdown_trigger=stop.wait)


def _metrics_server(
    registry: CollectorRegistry, listen_addr: str, stop: asyncio.Event
) -> Coroutine[Any, Any, None]:
    config = _quiet(Config())
    config.bind = [bind_address(listen_addr)]
    return _serve(MetricsApp(registry), config, stop)


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
        with contextlib.suppress(CallFSError):
            await services.generate_limiter.sweep()
            await services.download_limiter.sweep()


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def prepare(settings: Settings) -> None:
    """Open the metadata store once (creating or migrating its schema), check that
    every object store is writable, and seed ``/``."""
    container = Container(settings=settings)
    await open_resources(container)
    try:
        await check_storage(container)
        await container.engine().start()
    finally:
        await close_resources(container)


async def serve_worker(
    settings: Settings,
    *,
    metrics_listener: bool,
    housekeeping: bool,
    fd: int | None = None,
) -> None:
    """Serve the API in this process until SIGINT/SIGTERM (on socket ``fd`` when given).

    Tracing (when the ``OTEL_*`` environment asks for it) is set up here, in the
    process that serves: each worker has its own tracer provider and exporter.
    """
    if setup_tracing(settings.instance_discovery.instance_id):
        log.info("tracing on: spans are sent over OTLP/HTTP")
    try:
        await _serve_api(
            settings, metrics_listener=metrics_listener, housekeeping=housekeeping, fd=fd
        )
    finally:
        await asyncio.to_thread(shutdown_tracing)  # sends the spans still queued


async def _serve_api(
    settings: Settings, *, metrics_listener: bool, housekeeping: bool, fd: int | None
) -> None:
    container = Container(settings=settings)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await open_resources(container)
    try:
        engine = container.engine()
        await engine.start()
        app = container.app()
        tasks = [asyncio.create_task(_periodic_rate_limit_sweep(container))]
        if housekeeping:
            tasks.append(asyncio.create_task(_periodic_link_cleanup(engine, container)))
        if settings.server.http2:
            servers = [_serve(app, hypercorn_config(settings, fd), stop)]
        else:
            sock = (
                socket.socket(fileno=fd)
                if fd is not None
                else reuse_port_socket(settings.server.listen_addr, reuse_port=False)
            )
            servers = [_serve_uvicorn(uvicorn_config(app, settings), sock, stop)]
        if metrics_listener and settings.metrics.listen_addr:
            registry = container.metrics().registry
            servers.append(_metrics_server(registry, settings.metrics.listen_addr, stop))
        try:
            await asyncio.gather(*servers)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await close_resources(container)


def _worker_main(settings: Settings, index: int) -> None:
    configure_logging(settings.log.level, settings.log.format, secrets_of(settings))
    try:
        # Hypercorn takes the descriptor over (and closes it at shutdown).
        fd = reuse_port_socket(settings.server.listen_addr).detach()
        run_loop(serve_worker(settings, metrics_listener=False, housekeeping=index == 0, fd=fd))
    except OSError as exc:
        log.error("worker %d cannot serve: %s", index, exc)
        sys.exit(1)


def _check_bindable(listen_addr: str) -> None:
    """Fail early, in the supervisor, when an address is taken."""
    reuse_port_socket(listen_addr).close()


class Supervisor:
    """Starts, watches and stops the worker processes of a multi-worker server."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.count = workers
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, tuple[BaseProcess, float]] = {}

    def start_worker(self, index: int) -> None:
        process = self.context.Process(
            target=_worker_main, args=(self.settings, index), name=f"callfs-worker-{index}"
        )
        process.start()
        self.workers[index] = (process, time.monotonic())

    async def watch(self, stop: asyncio.Event) -> int:
        """Restart workers that die; return 1 when one fails to start, else 0 at stop."""
        from prometheus_client import multiprocess

        while not stop.is_set():
            sentinels = [p.sentinel for p, _ in self.workers.values()]
            await asyncio.to_thread(multiprocessing.connection.wait, sentinels, 0.5)
            for index, (process, started) in list(self.workers.items()):
                if process.is_alive() or stop.is_set():
                    continue
                assert process.pid is not None
                multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
                if time.monotonic() - started < STARTUP_WINDOW:
                    log.error("worker %d failed to start (exit code %s)", index, process.exitcode)
                    return 1
                log.error("worker %d exited (code %s); restarting it", index, process.exitcode)
                self.start_worker(index)
        return 0

    def stop_all(self) -> None:
        for process, _ in self.workers.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: graceful shutdown in the worker
        deadline = time.monotonic() + GRACE_PERIOD + 5
        for process, _ in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


async def _supervise(settings: Settings, workers: int) -> int:
    from callfs_adapters.metrics import exposition_registry

    stop = asyncio.Event()
    _stop_on_signals(stop)
    supervisor = Supervisor(settings, workers)
    for index in range(workers):
        supervisor.start_worker(index)
    tasks: list[asyncio.Future[None]] = []
    try:
        if settings.metrics.listen_addr:
            registry = exposition_registry(os.getpid())
            listener = _metrics_server(registry, settings.metrics.listen_addr, stop)
            tasks.append(asyncio.ensure_future(listener))
        code = await supervisor.watch(stop)
        stop.set()
        for task in tasks:
            await task
        return code
    finally:
        stop.set()
        await asyncio.to_thread(supervisor.stop_all)


def migrate(settings: Settings) -> int:
    """``callfs db migrate``: open the metadata store (which applies pending
    migrations) and close it again; return the exit code."""
    container = Container(settings=settings)

    async def run_migrations() -> None:
        store = container.raw_metadata()
        await store.open()  # type: ignore[attr-defined]
        await store.close()

    try:
        asyncio.run(run_migrations())
    except UnsupportedConfiguration as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except (OSError, CallFSError) as exc:
        reason = exc.message if isinstance(exc, CallFSError) else str(exc)
        print(f"Error: cannot migrate the metadata store: {reason}", file=sys.stderr)
        return 1
    return 0


def _reset_shared_state(settings: Settings) -> str:
    """A fresh folder for the state workers share, and the metrics files in it."""
    folder = shared_state_dir(settings)
    shutil.rmtree(folder, ignore_errors=True)
    metrics = os.path.join(folder, "metrics")
    os.makedirs(metrics, mode=0o700)
    SqliteRateLimiter.initialize(rate_limit_path(settings))
    return metrics


def run(settings: Settings, info: QuickstartInfo | None, warnings: Sequence[str] = ()) -> int:
    """Start the API (and metrics) listeners; return the process exit code."""
    configure_logging(settings.log.level, settings.log.format, secrets_of(settings))
    for warning in warnings:
        log.warning("%s", warning)
    workers = max(1, settings.server.workers)
    try:
        checked = Container(settings=settings)
        checked.backends()
        checked.raw_metadata()
        if workers > 1:
            # Must be set before any worker imports prometheus_client.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = _reset_shared_state(settings)
        checked.locks()
        asyncio.run(prepare(settings))
        if workers > 1:
            _check_bindable(settings.server.listen_addr)
            if settings.metrics.listen_addr:
                _check_bindable(settings.metrics.listen_addr)
    except UnsupportedConfiguration as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except (OSError, CallFSError) as exc:
        reason = exc.message if isinstance(exc, CallFSError) else str(exc)
        print(f"Error: cannot start the server: {reason}", file=sys.stderr)
        return 1
    info = info or QuickstartInfo(url=server_url(settings))
    print(banner(settings, info), file=sys.stderr, flush=True)
    try:
        if workers == 1:
            run_loop(serve_worker(settings, metrics_listener=True, housekeeping=True))
            return 0
        log.info("starting %d worker processes", workers)
        return asyncio.run(_supervise(settings, workers))
    except OSError as exc:
        print(f"Error: cannot start the server: {exc}", file=sys.stderr)
        return 1
    except CallFSError as exc:
        print(f"Error: cannot start the server: {exc.message}", file=sys.stderr)
        return 1
