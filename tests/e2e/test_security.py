"""Issue #14 over HTTP against a real `flux dev`: terminal injection, forwarded client IPs, path parameters
decoded once, and a request that logs 600 MiB leaving the server's memory and traces.db bounded."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import flux

pytestmark = pytest.mark.e2e

OSC52 = "\x1b]52;c;ZWNobyBwd25lZAo=\x07"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "sec"
    functions = {
        "limited": ({"route": "/limited", "rate_limit": {"requests": 2, "per_seconds": 60}},
                    "export default async () => ({ ok: true });"),
        "item": ({"route": "/items/{id}", "method": "GET"}, "export default async (input) => ({ id: input.id });"),
        "noisy": ({}, """export default async () => { console.log("title \\x1b]0;pwned\\x07 bell"); return 1; };"""),
        "fails": ({"async": True, "retry": {"max_attempts": 1, "base_ms": 0}},
                  """export default async () => { throw new Error("job \\x1b]52;c;ZWNobyBwd25lZAo=\\x07 failed"); };"""),
        "flood": ({"timeout_ms": 60000, "memory_mb": 512}, """
            export default async () => {
              const line = "x".repeat(10 * 1024 * 1024);
              for (let i = 0; i < 60; i++) console.log(line);
              return { logged: 60 };
            };"""),
    }
    (root / "functions").mkdir(parents=True)
    (root / "flux.json").write_text(json.dumps({"name": "sec"}))
    for name, (config, source) in functions.items():
        (root / "functions" / name).mkdir()
        (root / "functions" / name / "index.ts").write_text(source)
        (root / "functions" / name / "flux.json").write_text(json.dumps(config))
    return root


def raw_get(port: int, target: str) -> bytes:
    """A request line sent byte for byte (like curl --path-as-is): no client normalises the path."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_security_over_http(project: Path, dev_server_factory) -> None:
    server = dev_server_factory(project)
    port = server.port

    # 7. Terminal injection: an OSC 52 clipboard write in the path, and a forged line with %0a.
    assert b" 404 " in raw_get(port, "/%1b%5d52%3bc%3bZWNobyBwd25lZAo%3d%07x")
    raw_get(port, "/a%0aPOST%20/forged%20200")
    wait_for(lambda: "forged" in server.output())
    output = server.output()
    assert "\x1b" not in output and "\x07" not in output
    assert "/\\x1b]52;c;ZWNobyBwd25lZAo=\\x07x" in output
    assert not [line for line in output.splitlines() if line.startswith("POST /forged")]

    # ... a function's log line through `flux logs`, and a job's error on the JOB line and in the DLQ.
    assert server.client.post("/noisy", json={}).status_code == 200
    assert server.client.post("/fails", json={}).status_code == 202
    wait_for(lambda: "JOB    fails" in server.output())
    job_line = next(line for line in server.output().splitlines() if line.startswith("JOB    fails"))
    assert "\\x1b]52" in job_line and "\x1b" not in job_line
    logs = flux("logs", "--function", "noisy", "-C", str(project))
    assert logs.returncode == 0, logs.stderr
    assert "title \\x1b]0;pwned\\x07 bell" in logs.stdout and "\x1b]0" not in logs.stdout
    dlq = flux("queue", "dlq", "list", "-C", str(project))
    assert dlq.returncode == 0, dlq.stderr
    assert "\\x1b]52" in dlq.stdout and OSC52 not in dlq.stdout

    # 8. X-Forwarded-For does not let a client pick a fresh IP for each request.
    statuses = [server.client.post("/limited", json={}, headers={"x-forwarded-for": f"203.0.113.{i}"}).status_code
                for i in range(3)]
    assert statuses == [200, 200, 429]

    # 11. Path parameters are decoded exactly once.
    assert raw_get(port, "/items/a%252Fb").endswith(b'{"id":"a%2Fb"}')

    # 9. 60 x 10 MiB log lines: the dev server's memory and traces.db stay bounded.
    before = rss_kib(server.process.pid)
    flooded = server.client.post("/flood", json={}, timeout=120)
    assert flooded.status_code == 200, flooded.text
    after = rss_kib(server.process.pid)
    time.sleep(0.5)
    traces_db = sum(p.stat().st_size for p in (project / ".flux").glob("traces.db*"))
    assert traces_db < 20 * 1024 * 1024, traces_db
    assert after - before < 100 * 1024, (before, after)
