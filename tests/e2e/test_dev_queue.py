"""The local queue under `flux dev`: responses never wait for background work, and jobs survive a crash."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.e2e

JOB = """
export default async function handler(input, ctx) {
  await new Promise((resolve) => setTimeout(resolve, input.ms));
  await ctx.db.query({ table: "runs", operation: "insert",
                       data: { n: input.n, job_id: ctx.job.id, attempt: ctx.job.attempt } });
  return { n: input.n };
}
"""

TRIGGER = """
export default async function handler(input, ctx) {
  const { job_id } = await ctx.queue.push("job", { n: input.n, ms: input.ms });
  return { job_id };
}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "q"
    for name, source, config in (("job", JOB, {"async": True, "retry": {"max_attempts": 3, "base_ms": 100}}),
                                 ("trigger", TRIGGER, {"pushes": ["job"]})):
        (root / "functions" / name).mkdir(parents=True)
        (root / "functions" / name / "index.ts").write_text(source)
        (root / "functions" / name / "flux.json").write_text(json.dumps(config))
    (root / "schema").mkdir()
    (root / "schema" / "001_runs.sql").write_text(
        "CREATE TABLE runs (id bigserial PRIMARY KEY, n int NOT NULL, job_id text NOT NULL, attempt int NOT NULL);")
    (root / "flux.json").write_text(json.dumps({"name": "q"}))
    return root


def runs(dsn: str) -> list[tuple[int, str, int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT n, job_id, attempt FROM runs ORDER BY n").fetchall()


def test_response_does_not_wait_for_the_job(project, dev_server_factory, fresh_database_url):
    server = dev_server_factory(project)
    started = time.monotonic()
    response = server.client.post("/trigger", json={"n": 1, "ms": 1500})
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["job_id"]
    assert elapsed < 1.0
    assert runs(fresh_database_url) == []
    deadline = time.monotonic() + 15
    while not runs(fresh_database_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(n, job_id) for n, job_id, _ in runs(fresh_database_url)] == [(1, response.json()["job_id"])]


def test_jobs_pending_when_flux_dev_is_killed_run_after_restart_exactly_once(project, dev_server_factory,
                                                                            fresh_database_url):
    first = dev_server_factory(project)
    jobs = {}
    for n in range(12):
        response = first.client.post("/job", json={"n": n, "ms": 400})
        assert response.status_code == 202
        jobs[n] = response.json()["job_id"]
    time.sleep(0.6)  # some jobs done or running, most still pending
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    done_before = {n for n, _, _ in runs(fresh_database_url)}
    assert len(done_before) < 12, "the crash came too late to leave work pending"

    second = dev_server_factory(project)
    deadline = time.monotonic() + 60
    while len(runs(fresh_database_url)) < 12 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # anything that would run twice has had time to
    rows = runs(fresh_database_url)
    assert sorted(n for n, _, _ in rows) == list(range(12)), f"lost or duplicated: {rows}\n{second.output()}"
    assert {n: job_id for n, job_id, _ in rows} == jobs
