"""The queue dispatcher inside ``flux dev``: polls the SQLite queue and runs jobs through the runtime.

Lifecycle, as the dev server drives it::

    dispatcher = LocalDispatcher(queue, invoker, project, sink)
    await dispatcher.start()      # recovers deliveries orphaned by a killed flux dev, starts polling
    ...                           # EnqueueService(on_enqueued=dispatcher.wake) starts jobs at once
    await dispatcher.stop()       # stops polling; running jobs finish (up to grace_s), the rest are
                                  # released and run at the next start

Nothing is lost across a stop or a crash: a job is removed from the queue only by
the ack that records its success, and a job that was running when the process died
becomes visible again at the next start (:meth:`SqliteJobQueue.recover_orphaned_leases`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from functions.queue_consumer.backoff import Uniform
from functions.queue_consumer.ports import JobQueue, ReceivedJob
from functions.queue_consumer.runner import AttemptResult, JobRunner
from functions.queue_consumer.sqlite_queue import SqliteJobQueue
from functions.runtime.ports import Invoker
from functions.shared.manifest import Project
from functions.shared.spans import SpanSink

_log = logging.getLogger("flux.queue")

#: Done rows older than this are deleted at start (their counters stay in ``flux queue stats``).
DONE_RETENTION_S = 7 * 86_400
#: With nothing due, the dispatcher still looks once a second: another process (``flux queue replay``)
#: may add jobs to the file, and its enqueue cannot wake this one.
IDLE_POLL_S = 1.0


def visibility_timeout_s(project: Project) -> float:
    """How long a delivery stays hidden: 6 times the longest async function timeout, at least 30 s
    (the same rule as the SQS queues). The invoker kills a function at its timeout, so a lease
    only expires under a running job if the dispatcher itself is stuck."""
    timeouts = [s.config.timeout_ms for s in project.functions.values() if s.is_async]
    return max(30.0, 6 * max(timeouts, default=0) / 1000.0)


class LocalDispatcher:
    def __init__(self, queue: JobQueue, invoker: Invoker, project: Project, sink: SpanSink, *,
                 poll_interval_s: float = 0.05, idle_poll_s: float = IDLE_POLL_S, concurrency: int = 4,
                 grace_s: float = 30.0,
                 rng: Uniform | None = None,
                 on_attempt: Callable[[ReceivedJob, AttemptResult], None] | None = None) -> None:
        """``on_attempt`` sees every settled attempt (`flux dev` prints one line per job attempt).

        Between polls the dispatcher sleeps until the next queued job comes due (a delay, a retry's
        backoff), at least ``poll_interval_s`` and at most ``idle_poll_s``; an enqueue in this process
        wakes it at once (:meth:`wake`). An idle ``flux dev`` so wakes once a second, not 20 times.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.queue = queue
        self.runner = JobRunner(queue, invoker, project, sink, rng=rng)
        self.on_attempt = on_attempt
        self.poll_interval_s = poll_interval_s
        self.idle_poll_s = max(idle_poll_s, poll_interval_s)
        self.concurrency = concurrency
        self.grace_s = grace_s
        self._visibility_s = visibility_timeout_s(project)
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.update_project(project)

    @property
    def running(self) -> bool:
        return self._poller is not None and not self._poller.done()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def update_project(self, project: Project) -> None:
        """Hot reload: new retry policies, timeouts and functions apply to the next deliveries."""
        self.runner.project = project
        self._visibility_s = visibility_timeout_s(project)
        if isinstance(self.queue, SqliteJobQueue):
            self.queue.set_max_attempts({n: s.config.retry.max_attempts for n, s in project.functions.items()})

    async def start(self) -> None:
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        if isinstance(self.queue, SqliteJobQueue):
            recovered = await asyncio.to_thread(self.queue.recover_orphaned_leases)
            if recovered:
                _log.info("queue: %d job(s) interrupted by the last stop will run again", recovered)
            await asyncio.to_thread(self.queue.prune, DONE_RETENTION_S)
        self._poller = asyncio.create_task(self._poll(), name="flux-queue-dispatcher")

    def wake(self) -> None:
        """Poll now (thread-safe): called after an enqueue so the job does not wait for the next tick."""
        loop, event = self._loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    async def stop(self, *, grace_s: float | None = None) -> None:
        """Stop polling; let running jobs finish for up to ``grace_s``; release the rest for redelivery."""
        if self._poller is None:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._poller
        self._poller = None
        pending = set(self._tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=self.grace_s if grace_s is None else grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _poll(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._tasks)
            jobs: list[ReceivedJob] = []
            sleep_s = self.poll_interval_s
            if free > 0:
                try:
                    jobs, sleep_s = await asyncio.to_thread(self._receive, free)
                except Exception:  # noqa: BLE001 - a locked or broken file must not kill flux dev
                    _log.exception("queue: receive failed; retrying")
            for job in jobs:
                task = asyncio.create_task(self._run(job), name=f"flux-job-{job.job_id}")
                self._tasks.add(task)
                task.add_done_callback(self._finished)
            if self._stopping:
                break
            if jobs and len(jobs) == free:
                continue  # the queue may hold more; poll again as soon as a slot frees
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=sleep_s)

    def _receive(self, free: int) -> tuple[list[ReceivedJob], float]:
        """(jobs, how long to sleep before polling again), in one thread hop."""
        jobs = self.queue.receive(max_messages=free, visibility_timeout_s=self._visibility_s)
        if len(jobs) == free:
            return jobs, self.poll_interval_s
        due = self.queue.next_visible_in_s()
        if due is None:
            return jobs, self.idle_poll_s
        return jobs, min(self.idle_poll_s, max(self.poll_interval_s, due))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._wake is not None:
            self._wake.set()

    async def _run(self, job: ReceivedJob) -> None:
        try:
            result = await self.runner.run(job)
            if self.on_attempt is not None:
                self.on_attempt(job, result)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the lease expires and the job comes back
            _log.exception("queue: could not settle job %s of %s", job.job_id, job.function)
