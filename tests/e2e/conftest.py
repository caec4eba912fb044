"""Run `flux dev` as a real subprocess and talk to it over HTTP on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
FLUX = [sys.executable, "-m", "cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flux(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLUX, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, input=input)


class DevServer:
    def __init__(self, project: Path, *, env: dict | None = None, extra: tuple[str, ...] = ()) -> None:
        self.project = project
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = project / "dev-output.log"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [*FLUX, "dev", str(project), "--port", str(self.port), *extra], cwd=REPO,
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
        self.client = httpx.Client(base_url=self.url, timeout=60)
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"flux dev exited early:\n{self.output()}")
            if "ready in" in self.output():
                return
            time.sleep(0.1)
        raise RuntimeError(f"flux dev did not start in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.client.close()
        self._log_file.close()
        return self.process.returncode


@pytest.fixture
def dev_server_factory(fresh_database_url: str) -> Iterator:
    """Start `flux dev` on a project; its database is a fresh one on the session's Postgres
    unless ``embedded=True`` asks for the project's own embedded server under .flux/pg."""
    servers: list[DevServer] = []

    def start(project: Path, *, embedded: bool = False, env: dict | None = None, **kwargs) -> DevServer:
        env = dict(env or {})
        if not embedded:
            env.setdefault("DATABASE_URL", fresh_database_url)
        server = DevServer(project, env=env, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found
