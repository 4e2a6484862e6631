"""The versioned list of rules the conformance suite checks."""

from __future__ import annotations

import attrs

#: bumped whenever a rule is added, removed or changes meaning
RULES_VERSION = "5"


@attrs.frozen
class Rule:
    """One promise of the pool that a backend must keep."""

    #: stable identifier, such as ``"EX-1"``; failure messages start with it
    id: str
    #: short snake_case name; the test method is ``test_<id lowercased>_<name>``
    name: str
    #: the invariant of docs/architecture.md it checks, ``None`` for contract rules
    invariant: int | None
    summary: str
    #: names of :class:`~executors.Capabilities` fields that must be true, else it is skipped
    requires: tuple[str, ...] = ()

    @property
    def test_name(self) -> str:
        return f"test_{self.id.lower().replace('-', '_')}_{self.name}"


RULES: tuple[Rule, ...] = (
    Rule(
        "EX-1",
        "exactly_one_outcome",
        1,
        "A state machine drives a real pool with random jobs, faults, cancellations, "
        "idle-target changes and drains; after every step every accepted job has at most "
        "one outcome, its own, no executor runs two jobs, executors stay within "
        "max_executors; every drain is bounded and closes every executor.",
    ),
    Rule(
        "EX-2",
        "acquisition_never_hangs",
        3,
        "When every setup raises, waiting jobs fail with AcquireError, caused by the "
        "setup's exception, within a bound.",
    ),
    Rule(
        "EX-3",
        "at_most_once",
        5,
        "A job that started is never run again, even when it is cancelled or the pool "
        "drains while it runs.",
    ),
    Rule(
        "EX-4",
        "bounded_drain",
        9,
        "drain() refuses new jobs at once and returns within drain_timeout + "
        "close_timeout (plus a margin) with every outcome reported.",
    ),
    Rule(
        "EX-5",
        "no_leaks",
        10,
        "After the pool closes, no child process, thread or file descriptor it opened is left.",
    ),
    Rule(
        "EX-6",
        "crash_isolation",
        None,
        "A job that ends its executor's process (os._exit) gets outcome CRASHED and the "
        "pool goes on serving jobs.",
        requires=("isolates_crashes",),
    ),
    Rule(
        "EX-7",
        "kill_running_job",
        None,
        "A job that ignores cancellation is stopped at its job_timeout (TIMED_OUT, well "
        "before it would end), and the pool goes on serving jobs.",
        requires=("can_kill_running_job",),
    ),
    Rule(
        "EX-8",
        "sync_entrypoints",
        None,
        "A plain def entrypoint returns its value; one that raises gives FAILED/RAISED "
        "with the remote exception's type and message.",
        requires=("sync_entrypoints",),
    ),
    Rule(
        "EX-9",
        "async_entrypoints",
        None,
        "An async def entrypoint returns its value; one that raises gives FAILED/RAISED "
        "with the remote exception's type and message.",
        requires=("async_entrypoints",),
    ),
    Rule(
        "EX-10",
        "cancelled_start_leaves_nothing",
        10,
        "A start() cancelled by initialize_timeout or by a drain while its setup hangs "
        "leaves no process, thread or file descriptor behind, and the job waiting for it "
        "fails with ACQUIRE_FAILED.",
    ),
    Rule(
        "EX-11",
        "cheap_kill_at_drain",
        9,
        "On a backend with cheap kills, a Pool.run() job without a timeout that still "
        "runs when a drain's drain_timeout ends is killed: it ends once, POOL_CLOSED (its "
        "caller gets JobFailed), the drain stays bounded, the executor is closed "
        "pool_closed and nothing is left; a run() job with a timeout still times out.",
        requires=("cheap_kill", "can_kill_running_job"),
    ),
    Rule(
        "EX-12",
        "cancel_by_task_at_drain",
        9,
        "On a backend that cancels by task, a Pool.run() job without a timeout that still "
        "runs when a drain's drain_timeout ends is stopped by the cancellation of its "
        "caller's task (on asyncio; through its scope on trio), for each kind of "
        "entrypoint: it ends once, POOL_CLOSED (its caller gets JobFailed and is not left "
        "cancelled), the drain stays bounded, the executor is closed pool_closed and "
        "nothing is left; a run() job with a timeout still times out.",
        requires=("cancel_by_task",),
    ),
    Rule(
        "EX-13",
        "hands_over_at_once",
        None,
        "On a backend that hands jobs over at once, a Pool.run() job that the pool hands "
        "over before its launch bookkeeping (one without a cancel scope, for an idle "
        "executor) has begun, for each kind of entrypoint, while the pool's loop is held "
        "in its executors_job_started hook, and not in the pool's own thread; it then "
        "ends with its value.",
        requires=("hands_over_at_once",),
    ),
)


def rule(rule_id: str) -> Rule:
    """The rule with this id."""
    for candidate in RULES:
        if candidate.id == rule_id:
            return candidate
    msg = f"no rule {rule_id!r}"
    raise KeyError(msg)
