"""From raw measurements to the figures people read: per-stack summaries, ratios, markdown, RESULTS.md.

Ratios are Flux's figure over the baseline's, measured in the same run: for requests/s a
ratio below 1 means Flux serves fewer requests than the baseline; for p50 latency a ratio
above 1 means Flux is slower. Tracing overhead is flux (tracing on) against flux-notrace.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.stacks import REPO

BASELINES = ("raw", "fastapi", "chalice")


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of one stack x scenario (each round: a LoadResult dict plus memory and CPU)."""
    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 3)

    return {
        "rps": round(statistics.median(r["rps"] for r in rounds), 1),
        "p50_ms": med("p50_ms"), "p90_ms": med("p90_ms"), "p99_ms": med("p99_ms"),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rounds), 1),
        "peak_pss_mb": round(max(r["peak_pss_mb"] for r in rounds), 1),
        "processes": max(r["processes"] for r in rounds),
        "server_cpu_ms_per_req": med("server_cpu_ms_per_req"),
        "postgres_cpu_ms_per_req": med("postgres_cpu_ms_per_req"),
        "cpu_split_ms_per_req": rounds[len(rounds) // 2]["cpu_split_ms_per_req"],
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds), "non_2xx": sum(r["non_2xx"] for r in rounds),
        "rounds": len(rounds),
        "other_cpu_cores": round(max(r.get("other_cpu_cores", 0.0) for r in rounds), 2),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def ratios(summary: dict[str, dict[str, dict[str, Any]]], scenarios: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    flux = summary.get("flux", {})
    for scenario in scenarios:
        if scenario not in flux:
            continue
        row: dict[str, Any] = {}
        for base in BASELINES:
            other = summary.get(base, {}).get(scenario)
            if other:
                row[f"flux/{base}"] = {"rps": _ratio(flux[scenario]["rps"], other["rps"]),
                                       "p50": _ratio(flux[scenario]["p50_ms"], other["p50_ms"]),
                                       "p99": _ratio(flux[scenario]["p99_ms"], other["p99_ms"])}
        notrace = summary.get("flux-notrace", {}).get(scenario)
        if notrace:
            row["tracing"] = {
                "rps_on_over_off": _ratio(flux[scenario]["rps"], notrace["rps"]),
                "throughput_cost_pct": round((1 - flux[scenario]["rps"] / notrace["rps"]) * 100, 1)
                if notrace["rps"] else None,
                "p50_on_over_off": _ratio(flux[scenario]["p50_ms"], notrace["p50_ms"]),
            }
        out[scenario] = row
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_tables(result: dict[str, Any]) -> str:
    summary, rat = result["summary"], result["ratios"]
    scenarios = result["settings"]["scenarios"]
    lines = ["| stack | scenario | req/s | p50 ms | p99 ms | peak RSS MB | peak PSS MB | procs | "
             "server CPU ms/req | Postgres CPU ms/req | non-2xx | errors | other load (cores) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for stack, by_scenario in summary.items():
        for scenario in scenarios:
            s = by_scenario.get(scenario)
            if s is None:
                continue
            lines.append(f"| {stack} | {scenario} | {_fmt(s['rps'], 0)} | {_fmt(s['p50_ms'])} | {_fmt(s['p99_ms'])} | "
                         f"{_fmt(s['peak_rss_mb'], 0)} | {_fmt(s['peak_pss_mb'], 0)} | {s['processes']} | "
                         f"{_fmt(s['server_cpu_ms_per_req'], 3)} | {_fmt(s['postgres_cpu_ms_per_req'], 3)} | "
                         f"{s['non_2xx']} | {s['errors']} | {_fmt(s.get('other_cpu_cores'))} |")
    lines += ["", "| scenario | flux/raw req/s | flux/raw p50 | flux/fastapi req/s | flux/fastapi p50 | "
              "flux/chalice req/s | flux/chalice p50 | tracing on/off req/s | tracing cost |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for scenario, row in rat.items():
        cells = []
        for base in BASELINES:
            r = row.get(f"flux/{base}", {})
            cells += [_fmt(r.get("rps")), _fmt(r.get("p50"))]
        tracing = row.get("tracing", {})
        cost = tracing.get("throughput_cost_pct")
        cells += [_fmt(tracing.get("rps_on_over_off")), "-" if cost is None else f"{cost:.1f} %"]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_split_markdown(result: dict[str, Any]) -> str:
    """Flux's CPU per request by process kind, next to FastAPI's whole process, from the same run."""
    summary = result["summary"]
    lines = ["| scenario | flux: Python gateway | flux: Deno workers | flux-notrace: Python | flux-notrace: Deno | "
             "fastapi (all) | raw (all) |", "|---|---:|---:|---:|---:|---:|---:|"]

    def split(stack: str, scenario: str, name: str | None) -> str:
        s = summary.get(stack, {}).get(scenario)
        if s is None:
            return "-"
        if name is None:
            return f"{s['server_cpu_ms_per_req']:.3f}"
        python = sum(v for k, v in s["cpu_split_ms_per_req"].items() if k != "deno")
        return f"{(s['cpu_split_ms_per_req'].get('deno', 0.0) if name == 'deno' else python):.3f}"

    for sc in result["settings"]["scenarios"]:
        lines.append(f"| {sc} | {split('flux', sc, 'python')} | {split('flux', sc, 'deno')} | "
                     f"{split('flux-notrace', sc, 'python')} | {split('flux-notrace', sc, 'deno')} | "
                     f"{split('fastapi', sc, None)} | {split('raw', sc, None)} |")
    return "\n".join(lines)


def figures_markdown(figures: dict[str, Any]) -> str:
    lines = ["| figure | value | how |", "|---|---:|---|"]
    cold = figures.get("flux_dev_cold_start")
    if cold:
        lines.append(f"| `flux dev` spawn → first 200, fresh project | {cold['fresh_project_s'] * 1000:,.0f} ms | "
                     f"{cold['what']}, median of {cold['runs']} |")
        lines.append(f"| `flux dev` spawn → first 200, warm `.flux/` | {cold['warm_cache_s'] * 1000:,.0f} ms | "
                     "same, second start of the same project |")
    fn = figures.get("function_cold_start")
    if fn:
        lines.append(f"| function cold start (worker spawn → first answer) | {fn['cold_ms']:,.1f} ms | "
                     f"{fn['what']}, median of {fn['runs']}; {fn.get('source', '')} |")
        lines.append(f"| function warm call | {fn['warm_ms']:,.2f} ms | same runtime, second call |")
    for stack, seconds in (figures.get("startup_s") or {}).items():
        lines.append(f"| {stack}: spawn → first 200 | {seconds * 1000:,.0f} ms | measured when the stack was started |")
    comp = figures.get("compile")
    if comp:
        lines.append(f"| structured query compile (parse + compile + render) | {comp['total_median_us']:,.1f} µs | "
                     f"median, p99 {comp['total_p99_us']:,.1f} µs; {comp['source']} |")
    trace = figures.get("trace_cli")
    if trace:
        lines.append(f"| `flux trace --json`, 1,000 spans, new process | {trace['subprocess_ms']:,.0f} ms | "
                     f"in-process {trace.get('in_process_ms', 0):,.1f} ms, "
                     f"assembly {trace.get('assemble_ms', 0):,.1f} ms; {trace['source']} |")
    jobs = figures.get("async_jobs")
    if jobs:
        lines.append(f"| local async jobs/s | {jobs['jobs_per_s']:,.0f} | {jobs['path']}; {jobs['jobs']} jobs, "
                     "first POST to last job done |")
        if "queue_only_jobs_per_s" in jobs:
            lines.append(f"| local queue alone, jobs/s | {jobs['queue_only_jobs_per_s']:,.0f} | bench/queue_local.py: "
                         "SQLite queue + dispatcher with a no-op invoker (no HTTP, no Deno) |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                  if x.startswith("MemTotal"))
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1), "cpu": model,
            "kernel": platform.release(), "os": platform.platform(terse=True)}


def git_sha() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, check=False)
        return done.stdout.strip()

    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench")
    return sha + (" (with uncommitted changes outside bench/)" if changed else "")


def write_json(result: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['meta']['started'].replace(':', '').replace('-', '')}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def results_markdown(result: dict[str, Any]) -> str:
    meta, settings = result["meta"], result["settings"]
    m = meta["machine"]
    v = meta["versions"]
    rat = result["ratios"]
    headline = []
    for scenario, row in rat.items():
        raw, fastapi = row.get("flux/raw", {}), row.get("flux/fastapi", {})
        tracing = row.get("tracing", {})
        headline.append(f"- **{scenario}**: flux/raw {_fmt(raw.get('rps'))}x throughput "
                        f"(p50 {_fmt(raw.get('p50'))}x), flux/fastapi {_fmt(fastapi.get('rps'))}x throughput "
                        f"(p50 {_fmt(fastapi.get('p50'))}x); tracing costs "
                        f"{_fmt(tracing.get('throughput_cost_pct'), 1)} % of throughput")
    return f"""# Benchmark results

Latest full run of `make bench` (`.venv/bin/python -m bench.run`). Ratios are measured side by side
in one run on one machine, which is what to compare; absolute figures move with the machine.
`bench/PROFILE.md` says where the time goes on the Flux path.

- date: {meta['started']} (UTC), {meta['elapsed_s']:.0f} s
- machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}, Linux {m['kernel']}
- versions: Python {v['python']}, Deno {v['deno']}, Postgres {v['postgres']}, flux {v['flux_git']},
  wrk {v['wrk']}, postgres.js {v['postgres_js']}, FastAPI {v['bench'].get('fastapi')},
  uvicorn {v['bench'].get('uvicorn')} (flux dev and FastAPI: same version, uvloop + httptools),
  Chalice {v['bench'].get('chalice')}, psycopg {v['bench'].get('psycopg')}
- load: wrk, {settings['threads']} thread, {settings['connections']} connections, {settings['warmup_s']:g} s warm-up
  then {settings['duration_s']:g} s measured per stack x scenario, {settings['rounds']} round(s) (median of rounds;
  stacks in reverse order in the second round), all on 127.0.0.1
- database: one embedded Postgres for every stack: `items` with 10,000 seed rows in 50 categories, index on
  `category`; rows inserted by a run are deleted and the table vacuumed before each scenario
- pools: 10 connections everywhere (Flux Data Engine default); Flux: Deno workers on demand, up to 4 per function
- memory: peak RSS (and PSS, which splits shared pages) of the server's whole process tree, polled from /proc
  4x/s: for Flux the Python gateway plus its Deno workers. Postgres is shared by all stacks and is **not**
  included; its CPU per request is shown apart

## Headline

{chr(10).join(headline)}

## Throughput, latency, memory

{markdown_tables(result)}

## Where Flux's CPU goes (ms of CPU per request, from /proc)

{cpu_split_markdown(result)}

## Other figures

{figures_markdown(result['figures'])}

## Reading these figures

- The Flux gateway is one Python process on an asyncio loop; under load it is the bottleneck (about one
  core busy), while its Deno workers and Postgres have room left. `bench/PROFILE.md` breaks its time down.
- Flux's memory follows its pools: a function's first Deno worker starts with its first request, one
  worker runs up to 32 invocations at once (the function's `concurrency`, 10 by default, bounds them
  in all), a pool adds workers (up to four) when its workers stay full for 10 ms, a surplus worker is retired
  after 5 s with nothing in flight and the last one after 30 s idle. Each scenario's peak can include
  the workers of the scenario before it that have not been retired yet. PSS counts pages shared between
  the Deno workers once; RSS counts them in every worker.
- `chalice local` answers small responses on a kept-alive connection after a 40 ms stall (Python's
  `http.server` writes headers and body in two sends without TCP_NODELAY, which meets the client's
  delayed ACK), so its hello and insert figures measure that stall, not Chalice's code; its select
  responses are larger and mostly escape it.
- "other load" is CPU used during a measurement by processes that are neither the stack, Postgres, wrk
  nor the harness (other work on the machine); a figure measured with more than 0.15 cores of it is
  flagged in the console output.

Run it yourself: `make bench` (full, about 10 minutes) or `make bench-quick` (under 2 minutes; it prints
the same tables, does not touch this file). Raw data of every run: `bench/out/<timestamp>.json`.
"""


def main(argv: list[str] | None = None) -> int:
    """Re-render bench/RESULTS.md from a saved run: ``python -m bench.report bench/out/<timestamp>.json``."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.report bench/out/<timestamp>.json")
        return 2
    result = json.loads(Path(args[0]).read_text())
    target = REPO / "bench" / "RESULTS.md"
    target.write_text(results_markdown(result))
    print(f"wrote {target.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
