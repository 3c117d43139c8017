"""CallFS against nginx and SeaweedFS's filer: one run, one machine, loopback only.

Starts CallFS (embedded stack over HTTP and over HTTPS, and PostgreSQL + Redis over
HTTP), nginx (HTTP and HTTPS, same certificate) and SeaweedFS's filer, creates the same
files on each through its own API (on disk for nginx), measures them in turn with wrk
(small files, HEAD, 1 MiB files, listings) and a raw-socket client (large files),
repeats the round ``--repeat`` times, then prints the medians, the ratios of CallFS to
nginx and to SeaweedFS and which of the issue's targets hold; ``--json FILE`` writes
everything. Every figure is measured in the run; nothing is hard-coded.

    .venv/bin/python bench/run.py [--quick] [--repeat 3] [--json results.json]

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import headload
import memory_rss
import rawhttp
from servers import (
    CallFSTarget,
    NginxTarget,
    SeaweedTarget,
    Target,
    TargetUnavailable,
    nginx_binary,
    write_certificate,
)

MIB = 1024 * 1024
LUA = Path(__file__).resolve().parent / "wrk" / "load.lua"
WRK_TIMEOUT = "10s"  # per request; wrk's default (2 s) would count slow listings as errors
ERROR_TOLERANCE = 0.01  # a figure with more failed requests than this is flagged

TARGET_ORDER = [
    "callfs-http",
    "callfs-https",
    "callfs-pg-http",
    "nginx-http",
    "nginx-https",
    "seaweedfs",
]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = True


METRICS = [
    Metric("get4k_rps", "GET 4 KiB", "req/s"),
    Metric("get4k_p50_ms", "GET 4 KiB p50", "ms", False),
    Metric("get4k_p99_ms", "GET 4 KiB p99", "ms", False),
    Metric("put4k_rps", "PUT 4 KiB (new files)", "req/s"),
    Metric("put4k_p50_ms", "PUT 4 KiB p50", "ms", False),
    Metric("put4k_p99_ms", "PUT 4 KiB p99", "ms", False),
    Metric("head_rps", "HEAD (stat)", "req/s"),
    Metric("get1m_mbs", "GET 1 MiB", "MB/s"),
    Metric("put1m_mbs", "PUT 1 MiB", "MB/s"),
    Metric("getbig_mbs", "GET {big} MiB", "MB/s"),
    Metric("putbig_mbs", "PUT {big} MiB", "MB/s"),
    Metric("list_rps", "list {entries} entries", "req/s"),
    Metric("list_ms", "list {entries} entries p50", "ms", False),
    Metric("rss_peak_mib", "peak RSS moving {rss} MiB", "MiB", False),
]
THROUGHPUT = [m.key for m in METRICS if m.unit in ("req/s", "MB/s")]


@dataclass
class Settings:
    quick: bool
    repeat: int
    duration: int  # seconds per wrk run
    threads: int  # wrk threads
    small_connections: int  # 4 KiB GET/PUT, HEAD
    large_connections: int  # 1 MiB GET/PUT, listings
    big_mib: int  # size of the large file
    big_count: int  # large transfers per figure (one connection, sequential)
    big_time_limit: float  # no new large transfer after this many seconds
    list_entries: int
    rss_mib: int  # 0 = skip the RSS measurement
    targets: list[str] = field(default_factory=lambda: list(TARGET_ORDER))


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    ok: int  # requests with a 2xx/3xx status
    errors: int  # socket errors + non-2xx/3xx statuses
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def run_wrk(
    target: Target,
    method: str,
    path: str,
    settings: Settings,
    connections: int,
    *,
    body_size: int = 0,
    rotate: int = 0,
    headers: dict[str, str] | None = None,
    duration: int | None = None,
) -> WrkResult:
    """One wrk run against ``target`` (bounded by ``duration`` seconds)."""
    seconds = duration or settings.duration
    merged = {**target.headers, **(headers or {})}
    env = {
        **os.environ,
        "BENCH_METHOD": method,
        "BENCH_PATH": path,
        "BENCH_BODY_SIZE": str(body_size),
        "BENCH_ROTATE": str(rotate),
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in merged.items()),
    }
    command = [
        "wrk",
        f"-t{min(settings.threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(LUA),
        target.base_url + "/",
    ]
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            data = json.loads(line.removeprefix("WRK_RESULT "))
            break
    else:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    socket_errors = sum(data[f"errors_{k}"] for k in ("connect", "read", "write", "timeout"))
    requests = int(data["requests"])
    return WrkResult(
        requests=requests,
        ok=requests - int(data["errors_status"]),
        errors=socket_errors + int(data["errors_status"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
    )


# --------------------------------------------------------------------------- fixtures


@dataclass
class Fixtures:
    small: bytes
    medium: bytes
    big_size: int
    list_dir: str = "/list"
    small_path: str = "/bench/f4k.bin"
    medium_path: str = "/bench/f1m.bin"
    big_path: str = "/bench/big.bin"
    put_big_path: str = "/upload/big.bin"

    def list_paths(self, entries: int) -> Iterator[str]:
        return (f"{self.list_dir}/e{index:05d}" for index in range(entries))


def populate(target: Target, fixtures: Fixtures, settings: Settings) -> dict[str, Any]:
    """Create the files every measurement reads, and the folders the writes go to
    (created up front, so concurrent first writes do not race to create them)."""
    seeds = [f"/put4k-r{r}/seed" for r in range(settings.repeat)] + ["/put1m/seed"]
    seeds.append("/upload/seed")
    root = target.disk_root
    if root is not None:  # nginx: straight on disk
        for path, content in [
            (fixtures.small_path, fixtures.small),
            (fixtures.medium_path, fixtures.medium),
            *((seed, b"seed") for seed in seeds),
            *((entry, b"x") for entry in fixtures.list_paths(settings.list_entries)),
        ]:
            file = root / path.lstrip("/")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(content)
        big = root / fixtures.big_path.lstrip("/")
        if not big.exists():
            with big.open("wb") as stream:
                block = os.urandom(MIB)
                for _ in range(fixtures.big_size // MIB):
                    stream.write(block)
    else:
        with rawhttp.RawClient(target.base_url, target.headers) as client:
            for path, content in [
                (fixtures.small_path, fixtures.small),
                (fixtures.medium_path, fixtures.medium),
                *((seed, b"seed") for seed in seeds),
            ]:
                response = client.request("PUT", target.file_path(path), content)
                if not 200 <= response.status < 300:
                    raise RuntimeError(f"{target.label}: PUT {path}: {response.status}")
            response = client.request(
                "PUT", target.file_path(fixtures.big_path), body_size=fixtures.big_size
            )
            if not 200 <= response.status < 300:
                raise RuntimeError(f"{target.label}: PUT {fixtures.big_path}: {response.status}")
        failed = rawhttp.put_many(
            target.base_url,
            target.headers,
            (target.file_path(p) for p in fixtures.list_paths(settings.list_entries)),
            b"x",
        )
        if failed:
            raise RuntimeError(f"{target.label}: {failed} listing entries were not created")
    return check_fixtures(target, fixtures, settings)


def check_fixtures(target: Target, fixtures: Fixtures, settings: Settings) -> dict[str, Any]:
    """Read the fixtures back once; the listing must hold every entry."""
    with rawhttp.RawClient(target.base_url, target.headers) as client:
        small = client.request("GET", target.file_path(fixtures.small_path), keep_body=True)
        if small.status != 200 or small.body != fixtures.small:
            raise RuntimeError(f"{target.label}: GET {fixtures.small_path}: {small.status}")
        path, headers = target.list_request(fixtures.list_dir, settings.list_entries)
        listing = client.request("GET", path, headers=headers, keep_body=True)
        if listing.status != 200:
            raise RuntimeError(f"{target.label}: listing: {listing.status}")
        entries = target.count_listing(listing.body)
    if entries != settings.list_entries:
        raise RuntimeError(
            f"{target.label}: the listing holds {entries} entries, not {settings.list_entries}"
        )
    return {"listing_entries": entries, "listing_bytes": len(listing.body)}


# --------------------------------------------------------------------------- one round


Figures = dict[str, float]


def measure_round(
    target: Target,
    fixtures: Fixtures,
    settings: Settings,
    round_index: int,
    warnings: list[str],
) -> Figures:
    """Every figure of one target, once."""
    figures: Figures = {}

    def note(metric: str, result: WrkResult) -> None:
        if result.requests == 0 or result.errors > ERROR_TOLERANCE * result.requests:
            warnings.append(
                f"{target.label} {metric} (round {round_index + 1}): {result.errors} errors "
                f"in {result.requests} requests"
            )

    small = target.file_path(fixtures.small_path)
    result = run_wrk(target, "GET", small, settings, settings.small_connections)
    note("GET 4 KiB", result)
    figures.update(get4k_rps=result.rps, get4k_p50_ms=result.p50_ms, get4k_p99_ms=result.p99_ms)

    result = run_wrk(
        target,
        "PUT",
        target.file_path(f"/put4k-r{round_index}/"),
        settings,
        settings.small_connections,
        body_size=len(fixtures.small),
    )
    note("PUT 4 KiB", result)
    figures.update(put4k_rps=result.rps, put4k_p50_ms=result.p50_ms, put4k_p99_ms=result.p99_ms)

    # wrk cannot do HEAD (it waits for a body): a small asyncio client instead.
    head = headload.head_load(
        target.base_url, small, target.headers, settings.small_connections, settings.duration
    )
    if head.requests == 0 or head.errors > ERROR_TOLERANCE * head.requests:
        warnings.append(
            f"{target.label} HEAD (round {round_index + 1}): {head.errors} errors "
            f"in {head.requests + head.errors} requests"
        )
    figures["head_rps"] = head.rps

    medium = target.file_path(fixtures.medium_path)
    result = run_wrk(target, "GET", medium, settings, settings.large_connections)
    note("GET 1 MiB", result)
    figures["get1m_mbs"] = result.rps * len(fixtures.medium) / 1e6

    # Cycle over 16 paths per wrk thread: bounded disk use; replaces after the first 16.
    result = run_wrk(
        target,
        "PUT",
        target.file_path("/put1m/"),
        settings,
        settings.large_connections,
        body_size=len(fixtures.medium),
        rotate=16,
    )
    note("PUT 1 MiB", result)
    figures["put1m_mbs"] = result.rps * len(fixtures.medium) / 1e6

    for key, method, path in [
        ("getbig_mbs", "GET", fixtures.big_path),
        ("putbig_mbs", "PUT", fixtures.put_big_path),
    ]:
        moved = rawhttp.transfer(
            target.base_url,
            target.headers,
            method,
            target.file_path(path),
            fixtures.big_size,
            settings.big_count,
            settings.big_time_limit,
        )
        if moved.failures:
            warnings.append(
                f"{target.label} {method} {settings.big_mib} MiB (round {round_index + 1}): "
                f"{moved.failures} of {moved.transfers} transfers failed"
            )
        figures[key] = moved.mb_s

    path, headers = target.list_request(fixtures.list_dir, settings.list_entries)
    result = run_wrk(target, "GET", path, settings, settings.large_connections, headers=headers)
    note("listing", result)
    figures.update(list_rps=result.rps, list_ms=result.p50_ms)
    return figures


# --------------------------------------------------------------------------- report


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def metric_label(metric: Metric, settings: Settings) -> str:
    label = metric.label.format(
        big=settings.big_mib, entries=f"{settings.list_entries:,}", rss=settings.rss_mib or "-"
    )
    return f"{label} ({metric.unit})"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


RATIOS = [
    ("CallFS http / nginx http", "callfs-http", "nginx-http"),
    ("CallFS https / nginx https", "callfs-https", "nginx-https"),
    ("CallFS http / SeaweedFS", "callfs-http", "seaweedfs"),
    ("CallFS https / SeaweedFS", "callfs-https", "seaweedfs"),
]


@dataclass(frozen=True)
class Check:
    text: str
    metric: str
    numerator: str
    denominator: str | None  # None: compare the figure itself with ``bound``
    bound: float
    below: bool = False  # the figure must stay below ``bound`` (RSS)


CHECKS = [
    Check("GET 4 KiB >= 50% of SeaweedFS req/s", "get4k_rps", "callfs-http", "seaweedfs", 0.5),
    Check("PUT 4 KiB >= 40% of SeaweedFS req/s", "put4k_rps", "callfs-http", "seaweedfs", 0.4),
    Check(
        "GET {big} MiB >= 100% of nginx MB/s (HTTP)",
        "getbig_mbs",
        "callfs-http",
        "nginx-http",
        1.0,
    ),
    Check(
        "GET {big} MiB >= 100% of nginx MB/s (HTTPS)",
        "getbig_mbs",
        "callfs-https",
        "nginx-https",
        1.0,
    ),
    Check(
        "PUT {big} MiB >= 150% of SeaweedFS MB/s",
        "putbig_mbs",
        "callfs-http",
        "seaweedfs",
        1.5,
    ),
    Check("peak RSS < 150 MiB moving {rss} MiB", "rss_peak_mib", "callfs-https", None, 150.0, True),
]


def evaluate(
    check: Check, medians: dict[str, dict[str, float | None]], settings: Settings
) -> dict[str, Any]:
    text = check.text.format(big=settings.big_mib, rss=settings.rss_mib)
    value = medians.get(check.numerator, {}).get(check.metric)
    if check.denominator is not None:
        value = ratio(value, medians.get(check.denominator, {}).get(check.metric))
    holds: bool | None = None
    if value is not None:
        holds = value < check.bound if check.below else value >= check.bound
    return {"target": text, "value": value, "bound": check.bound, "holds": holds}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths)
    )
    return "\n".join([line(header), rule + "|", *(line(row) for row in rows)])


def report(
    settings: Settings,
    targets: list[Target],
    medians: dict[str, dict[str, float | None]],
    checks: list[dict[str, Any]],
) -> str:
    names = [t.name for t in targets]
    labels = [t.label for t in targets]
    rows = [
        [metric_label(m, settings), *(fmt(medians[name].get(m.key)) for name in names)]
        for m in METRICS
    ]
    parts = [markdown_table(["figure (median)", *labels], rows)]
    ratio_rows = []
    for m in METRICS:
        if m.key not in THROUGHPUT:
            continue
        cells = [ratio(medians.get(a, {}).get(m.key), medians.get(b, {}).get(m.key))
                 for _, a, b in RATIOS]  # fmt: skip
        ratio_rows.append([metric_label(m, settings)] + [
            "-" if c is None else f"{c:.2f}" for c in cells
        ])  # fmt: skip
    parts.append(markdown_table(["ratio (higher = CallFS faster)", *(r[0] for r in RATIOS)],
                                ratio_rows))  # fmt: skip
    check_lines = []
    for check in checks:
        state = {True: "holds", False: "DOES NOT HOLD", None: "not measured"}[check["holds"]]
        value = "-" if check["value"] is None else f"{check['value']:.2f}"
        check_lines.append(f"- {check['target']}: {value} -> {state}")
    parts.append("Targets (CallFS embedded):\n" + "\n".join(check_lines))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- main


def build_targets(folder: Path, settings: Settings, log: Callable[[str], None]) -> list[Target]:
    cert = write_certificate(folder)
    candidates: list[Target] = []
    wanted = set(settings.targets)
    if "callfs-http" in wanted:
        candidates.append(CallFSTarget(folder / "callfs-http", "http", cert))
    if "callfs-https" in wanted:
        candidates.append(CallFSTarget(folder / "callfs-https", "https", cert))
    if "callfs-pg-http" in wanted:
        candidates.append(CallFSTarget(folder / "callfs-pg", "http", cert, "postgres-redis"))
    if wanted & {"nginx-http", "nginx-https"} and nginx_binary() is None:
        log("nginx not found: skipped (apt-get install nginx)")
    else:
        root = folder / "nginx-root"
        root.mkdir()
        if "nginx-http" in wanted:
            candidates.append(NginxTarget(folder / "nginx-http", root, False, cert))
        if "nginx-https" in wanted:
            candidates.append(NginxTarget(folder / "nginx-https", root, True, cert))
    if "seaweedfs" in wanted:
        candidates.append(SeaweedTarget(folder / "seaweedfs"))
    return candidates


def parse_args(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs for trying the harness: 2 s per wrk run, 1 round, 64 MiB large "
        "files, 1,000 listing entries, RSS over 256 MiB (figures are not comparable)",
    )
    parser.add_argument("--repeat", type=int, help="rounds; figures are medians (default 3)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 5, max 10)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument(
        "--targets",
        help=f"comma-separated subset of: {', '.join(TARGET_ORDER)} (default: all)",
    )
    parser.add_argument("--big-mib", type=int, help="large file size (default 256)")
    parser.add_argument("--list-entries", type=int, help="listing size (default 10000)")
    parser.add_argument(
        "--rss-mib", type=int, help="file size for the peak RSS figure (default 1024; 0 = skip)"
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    cpus = os.cpu_count() or 1
    settings = Settings(
        quick=quick,
        repeat=args.repeat or (1 if quick else 3),
        duration=min(args.duration or (2 if quick else 5), 10),
        threads=max(1, min(cpus, 2)),
        small_connections=16,
        large_connections=4,
        big_mib=args.big_mib or (64 if quick else 256),
        big_count=2 if quick else 8,
        big_time_limit=0.0,  # set below: the wrk duration
        list_entries=args.list_entries or (1000 if quick else 10000),
        rss_mib=args.rss_mib if args.rss_mib is not None else (256 if quick else 1024),
    )
    if args.targets:
        chosen = [name.strip() for name in args.targets.split(",") if name.strip()]
        unknown = set(chosen) - set(TARGET_ORDER)
        if unknown:
            parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
        settings.targets = [name for name in TARGET_ORDER if name in chosen]
    settings.big_time_limit = float(settings.duration)
    if settings.repeat < 1:
        parser.error("--repeat must be >= 1")
    return settings, args


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
        print(f"[{stamp}] {message}", file=sys.stderr, flush=True)

    started = datetime.datetime.now(datetime.UTC)
    skipped: dict[str, str] = {}
    runs: dict[str, dict[str, list[float]]] = {}
    checks_data: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    fixtures = Fixtures(
        small=os.urandom(4096), medium=os.urandom(MIB), big_size=settings.big_mib * MIB
    )
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="callfs-bench-")))
        started_targets: list[Target] = []
        for target in build_targets(folder, settings, log):
            log(f"starting {target.label}")
            try:
                target.start()
            except TargetUnavailable as exc:
                log(f"{target.label}: skipped: {exc}")
                skipped[target.name] = str(exc)
                target.stop()
                continue
            stack.callback(target.stop)
            started_targets.append(target)
        for name in settings.targets:
            if name not in skipped and name not in {t.name for t in started_targets}:
                skipped[name] = "nginx not found: skipped (apt-get install nginx)"
        for target in list(started_targets):
            log(f"creating the files on {target.label} ({target.base_url})")
            begin = time.perf_counter()
            try:
                checks_data[target.name] = populate(target, fixtures, settings)
                # Warm-up, not recorded: first requests load code, open pools.
                small = target.file_path(fixtures.small_path)
                run_wrk(target, "GET", small, settings, 4, duration=1)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                log(f"{target.label}: skipped: {exc}")
                skipped[target.name] = f"could not create the files: {exc}"
                started_targets.remove(target)
                continue
            log(f"  done in {time.perf_counter() - begin:.1f} s")
            runs[target.name] = {m.key: [] for m in METRICS}
        for round_index in range(settings.repeat):
            for target in started_targets:
                log(f"round {round_index + 1}/{settings.repeat}: {target.label}")
                try:
                    figures = measure_round(target, fixtures, settings, round_index, warnings)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    log(f"{target.label}: round {round_index + 1} failed: {exc}")
                    warnings.append(f"{target.label} round {round_index + 1} failed: {exc}")
                    continue
                for key, value in figures.items():
                    runs[target.name][key].append(value)
            if settings.rss_mib and "callfs-https" in runs:
                log(f"round {round_index + 1}/{settings.repeat}: CallFS peak RSS")
                try:
                    result = memory_rss.measure(settings.rss_mib, folder=folder)
                except Exception as exc:  # report it, keep the other figures
                    warnings.append(f"peak RSS round {round_index + 1} failed: {exc}")
                    continue
                runs["callfs-https"]["rss_peak_mib"].append(result.peak_rss_bytes / MIB)
    finished = datetime.datetime.now(datetime.UTC)

    medians: dict[str, dict[str, float | None]] = {
        name: {key: median(values) for key, values in metrics.items()}
        for name, metrics in runs.items()
    }
    order = {name: index for index, name in enumerate(TARGET_ORDER)}
    shown = sorted(started_targets, key=lambda t: order[t.name])
    checks = [evaluate(check, medians, settings) for check in CHECKS]
    print()
    print(
        f"CallFS benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{settings.repeat} round(s), medians; {settings.duration} s per wrk run"
        + (" (--quick: not comparable)" if settings.quick else "")
    )
    print()
    print(report(settings, shown, medians, checks))
    for name, reason in skipped.items():
        print(f"\n{name}: {reason}")
    if warnings:
        print("\nWarnings (failed requests):")
        for warning in warnings:
            print(f"- {warning}")
    if settings.rss_mib:
        print(
            "\nPeak RSS: bench/memory_rss.py's measure() (its own HTTPS server, one worker), "
            "shown in the CallFS https column."
        )
    if args.json:
        document = {
            "started": started.isoformat(),
            "finished": finished.isoformat(),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "settings": asdict(settings),
            "metrics": {m.key: metric_label(m, settings) for m in METRICS},
            "targets": {
                t.name: {
                    "label": t.label,
                    "url": t.base_url,
                    "fixtures": checks_data.get(t.name, {}),
                    "median": medians.get(t.name, {}),
                    "runs": runs.get(t.name, {}),
                }
                for t in shown
            },
            "skipped": skipped,
            "ratios": {
                label: {
                    key: ratio(medians.get(a, {}).get(key), medians.get(b, {}).get(key))
                    for key in THROUGHPUT
                }
                for label, a, b in RATIOS
            },
            "checks": checks,
            "warnings": warnings,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
