"""The jobs' path to an executor's actor: a Ray compiled graph, served by a thread.

A plain actor call goes through Ray's task machinery each time: the arguments are
submitted over gRPC, the actor schedules the call, the reply comes back through the
object store's protocol. A compiled graph sets up, once, a channel each way between the
host and the actor (shared memory on one node, Ray's own transfer between nodes), and a
loop in the actor that reads a job, runs it and writes its reply. A job's round trip is
then a fraction of a plain call's, and so is the CPU it costs.

Reading a graph's reply blocks, so each graph has a thread of its own: it compiles the
graph, sends each job and waits for its reply, and tears the graph down at the end. The
event loop (asyncio or trio) never blocks on Ray; it hands the thread a job and is woken
by the reply's future, as it is by a plain call's.

What the executor leans on, as Ray's graphs behave (Ray 2.x):

- The graph carries bytes only (:meth:`ExecutorActor.run_packed`): a value it failed to
  serialize would break it for good, so a job's arguments are pickled on the host and
  its reply in the actor, and each failure to is that job's own.
- An actor that dies mid-job does not fail the job's future at once: the executor's
  death watch wakes the job instead. The thread is freed once Ray tears the graph down.
- Ray's teardown of a graph whose actor runs a job waits for the job; so the thread
  tears its graph down only between jobs, and the executor ends a busy actor first.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

logger = logging.getLogger("executors.ray")

#: what ``close()`` puts in the queue of jobs
_CLOSE: Any = object()


class Unsent(Exception):
    """A reply's exception where the job was not sent: the graph is gone."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class JobGraph:
    """One executor's compiled graph, and the thread that serves it."""

    def __init__(self, actor: Any, name: str) -> None:
        self._actor = actor
        self._jobs: queue.SimpleQueue[tuple[bytes, Future[bytes]] | Any] = queue.SimpleQueue()
        #: done once the graph is compiled (its exception, where Ray could not)
        self.compiled: Future[None] = Future()
        #: done once the thread has torn the graph down and ended
        self.closed: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> Future[None]:
        """Starts the thread, which compiles the graph: ``compiled`` tells when."""
        self._thread.start()
        return self.compiled

    def send(self, data: bytes) -> Future[bytes]:
        """Hands one job's pickled arguments to the thread: the future is its pickled
        reply, or the exception the graph raised (nothing was sent where
        ``execute()`` raised)."""
        reply: Future[bytes] = Future()
        self._jobs.put((data, reply))
        return reply

    def close(self) -> Future[None]:
        """The thread tears the graph down once the job it waits on (if any) ends, and
        ends: ``closed`` tells when."""
        self._jobs.put(_CLOSE)
        return self.closed

    def _serve(self) -> None:
        try:
            self._run()
        finally:
            self.closed.set_result(None)

    def _run(self) -> None:
        from ray.dag import InputNode

        try:
            with InputNode() as job:
                node = self._actor.run_packed.bind(job)
            compiled = node.experimental_compile()
        except BaseException as exc:
            self.compiled.set_exception(exc)
            return
        self.compiled.set_result(None)
        try:
            while (item := self._jobs.get()) is not _CLOSE:
                data, reply = item
                if not reply.set_running_or_notify_cancel():
                    continue
                try:
                    sent = compiled.execute(data)
                except BaseException as exc:
                    reply.set_exception(Unsent(exc))
                    continue
                try:
                    # -1: no deadline; the executor's own bounds (timeouts, the death
                    # watch) decide how long a job may take
                    reply.set_result(sent.get(timeout=-1))
                except BaseException as exc:
                    reply.set_exception(exc)
        finally:
            try:
                compiled.teardown()
            except Exception as exc:
                logger.debug("tearing down a compiled graph: %s", exc)
