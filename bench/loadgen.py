"""Load generation with ``wrk``: one Lua script per scenario, figures read from wrk's own summary.

Every script ends with a ``done()`` hook that prints wrk's summary and latency histogram
as one JSON line (after a marker), so the harness reads exact counts and percentiles
instead of parsing the human text of ``--latency``. Requests vary per call (the select
walks the 50 categories, the insert writes rows of rotating categories) so no stack can
answer from a cache of one key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

MARK = "@@BENCH@@"

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    "@@BENCH@@", summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
"""

SCRIPTS: dict[str, str] = {
    "hello": """
wrk.method = "GET"
wrk.path = "/hello"
""",
    "insert": """
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"name":"bench item %d","category":"c%d","price":%d.%02d}',
                             n, n % 50, n % 1000, n % 100)
  return wrk.format("POST", "/items", {["Content-Type"] = "application/json"}, body)
end
""",
    "select": """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/items?category=c" .. (n % 50))
end
""",
    # An endpoint that looks real: the item with its latest orders, an insert, a job pushed.
    "real": """
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"item_id":%d,"quantity":%d}', (n * 7919) % 10000 + 1, n % 5 + 1)
  return wrk.format("POST", "/orders", {["Content-Type"] = "application/json"}, body)
end
""",
}

SCENARIOS = tuple(SCRIPTS)


@dataclass(frozen=True, slots=True)
class LoadSettings:
    threads: int
    connections: int
    duration_s: float
    warmup_s: float
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int          # socket errors + timeouts
    non_2xx: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed (the harness installs it with apt-get as root)")
    return path


def run_wrk(url: str, scenario: str, settings: LoadSettings, *, duration_s: float | None = None) -> LoadResult:
    """Drive ``url`` with the scenario's script for ``duration_s`` (default: the settings' duration)."""
    seconds = settings.duration_s if duration_s is None else duration_s
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(SCRIPTS[scenario] + _DONE)
        script = handle.name
    argv = [wrk_binary(), f"-t{settings.threads}", f"-c{settings.connections}", f"-d{max(1, round(seconds))}s",
            f"--timeout={settings.timeout_s:g}s", "--latency", "-s", script, url]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        Path(script).unlink(missing_ok=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
    raw = json.loads(line[len(MARK):])
    duration = raw["duration_us"] / 1e6
    return LoadResult(
        requests=raw["requests"], duration_s=round(duration, 3),
        rps=round(raw["requests"] / duration, 1) if duration > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000, p99_ms=raw["p99_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3), max_ms=raw["max_us"] / 1000,
        errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
        non_2xx=raw["status_errors"],
    )


def wrk_version() -> str:
    done = subprocess.run([wrk_binary(), "--version"], capture_output=True, text=True, check=False)
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0].split(" [")[0].removeprefix("wrk ") if text else "?"
