"""Cold vs warm: how long a Deno worker takes to answer its first invocation, and a warm one its next.

    .venv/bin/python bench/runtime_cold_warm.py [--rounds 10] [--warm 50]

Cold = spawn deno + load the bootstrap and the user module + the first invocation (a pool with no
warm worker). Warm = one more invocation on the same worker. Both through Runtime.invoke, without HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from functions.runtime.host import Runtime, RuntimeOptions
from functions.shared.context import CallContext
from functions.shared.manifest import load_project
from functions.shared.spans import NullSink


def project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="flux-coldwarm-"))
    (root / "flux.json").write_text(json.dumps({"name": "coldwarm"}))
    (root / "functions" / "hello").mkdir(parents=True)
    (root / "functions" / "hello" / "index.ts").write_text("export default async (i) => ({ hello: i.name });")
    return root


async def measure(rounds: int, warm_calls: int) -> tuple[list[float], list[float]]:
    root = project()
    cold: list[float] = []
    warm: list[float] = []
    call = CallContext("a" * 32, None, "", "a" * 32, NullSink())
    for _ in range(rounds):
        runtime = Runtime(load_project(root),
                          options=RuntimeOptions(state_dir=root / ".flux", min_warm=0))
        started = time.perf_counter()
        await runtime.invoke("hello", {"name": "x"}, call)
        cold.append((time.perf_counter() - started) * 1000)
        for _ in range(warm_calls):
            started = time.perf_counter()
            await runtime.invoke("hello", {"name": "x"}, call)
            warm.append((time.perf_counter() - started) * 1000)
        await runtime.close()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warm", type=int, default=50)
    args = parser.parse_args()
    cold, warm = asyncio.run(measure(args.rounds, args.warm))
    warm.sort()
    print(f"cold (spawn + load + first invoke): median {statistics.median(cold):.1f} ms, "
          f"min {min(cold):.1f}, max {max(cold):.1f} (n={len(cold)})")
    print(f"warm invoke: median {statistics.median(warm):.3f} ms, p99 {warm[int(len(warm) * 0.99) - 1]:.3f} ms "
          f"(n={len(warm)})")


if __name__ == "__main__":
    main()
