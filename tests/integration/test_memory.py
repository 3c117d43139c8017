"""MUST-HOLD: streaming a 1 GiB file up and down keeps the server under 150 MiB RSS.

The measurement lives in ``bench/memory_rss.py`` (also a standalone script); this test
imports it by path and runs it with the issue's figures.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "memory_rss.py"
MIB = 1024 * 1024


def load_bench() -> ModuleType:
    name = "callfs_bench_memory_rss"
    spec = importlib.util.spec_from_file_location(name, BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_peak_rss_streaming_1_gib(tmp_path: Path) -> None:
    bench = load_bench()
    result = bench.measure(1024, folder=tmp_path)
    print(result.report())
    assert result.size_bytes == 1024 * MIB
    assert result.samples >= 20  # the sampler really ran during the transfers
    assert result.peak_rss_bytes > 0
    assert result.peak_rss_bytes < 150 * MIB, result.report()
