"""Start and stop a real ``callfs server`` process (``python -m callfs_cli server``).

Imports neither pytest nor the OpenAPI checker, so that ``bench/memory_rss.py`` (a
standalone script) shares this start-up with ``conftest.Server``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from procutil import dies_with_parent


@dataclass
class ServerProcess:
    """``callfs server`` run with ``config`` in ``folder`` (its log: ``server.log`` there)."""

    folder: Path
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        scheme = "http" if self.config["server"].get("protocol") == "http" else "https"
        return f"{scheme}://{self.config['server']['listen_addr']}"

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until ``/health`` answers."""
        config_path = self.folder / "config.yaml"
        config_path.write_text(json.dumps(self.config))  # JSON is valid YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "callfs_cli", "server", "--config", str(config_path)],
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() can kill the workers with their supervisor
                preexec_fn=dies_with_parent(signal.SIGTERM),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                httpx.get(f"{self.base_url}/health", verify=False, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL to the whole process group after 40 s; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code
