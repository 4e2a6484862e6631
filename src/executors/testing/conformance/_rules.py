"""The versioned list of rules the conformance suite checks.

``EX`` rules run through a real pool; ``SL`` rules run on a bare executor from the
backend's factory, with no pool around it (a *slot*).
"""

from __future__ import annotations

from typing import Literal

import attrs

#: bumped whenever a rule is added, removed or changes meaning
RULES_VERSION = "8"


@attrs.frozen
class Rule:
    """One promise that a backend must keep, and how the suite checks it."""

    #: stable identifier, such as ``"EX-1"``; failure messages start with it
    id: str
    #: short snake_case name; the test method is ``test_<id lowercased>_<name>``
    name: str
    #: the invariant of docs/architecture.md it checks, ``None`` for contract rules
    invariant: int | None
    #: how the suite checks it
    summary: str
    #: names of :class:`~executors.Capabilities` fields that must be true, else it is skipped
    requires: tuple[str, ...] = ()
    #: the promise of the contract it holds a backend to
    promise: str = ""

    @property
    def test_name(self) -> str:
        return f"test_{self.id.lower().replace('-', '_')}_{self.name}"

    @property
    def level(self) -> Literal["pool", "slot"]:
        """``pool`` for EX rules, ``slot`` for SL rules."""
        return "slot" if self.id.startswith("SL-") else "pool"


RULES: tuple[Rule, ...] = (
    Rule(
        "EX-1",
        "exactly_one_outcome",
        1,
        "A Hypothesis state machine drives a real pool (asyncio or trio host) with jobs "
        "that echo, raise, raise a BaseException, sleep, hang, allocate or crash, and with "
        "cancels, timeouts, idle-target changes, drains and reopenings in any order. After "
        "every step: every job has at most one outcome, its own; the witness shows no job "
        "run twice, two jobs at once on one executor, or job code after its outcome; "
        "executors stay within max_executors; every drain is bounded, closes every "
        "executor gracefully and ends every job. Then one executor runs three jobs in a "
        "row, each of which must end with its own value.",
        promise="Every accepted job reaches exactly one outcome, whatever else happens "
        "meanwhile; one job per slot at a time.",
    ),
    Rule(
        "EX-2",
        "acquisition_never_hangs",
        3,
        "When every setup raises, waiting jobs fail with AcquireError, caused by the "
        "setup's exception, within a bound.",
        promise="start() raises on failure, the setup's own exception where the setup "
        "raised; it never hangs instead.",
    ),
    Rule(
        "EX-3",
        "at_most_once",
        5,
        "Jobs that succeed, raise, crash, hang or are cancelled run while the pool drains; "
        "the witness shows that no job's body began twice, and every job that succeeded "
        "began once.",
        promise="Raise LaunchError only when the job was never accepted (no part of it "
        "ran): the pool then runs it elsewhere.",
    ),
    Rule(
        "EX-4",
        "bounded_drain",
        9,
        "drain() refuses new jobs at once and returns within drain_timeout + "
        "close_timeout (plus a margin) with every outcome reported.",
        promise="run_job() and aclose() end when cancelled: a drain is bounded.",
    ),
    Rule(
        "EX-5",
        "no_leaks",
        10,
        "After the pool closes, no child process, thread or file descriptor it opened is "
        "left; on a remote backend (executors elsewhere), every executor it made reports "
        "itself dead (health().alive false).",
        promise="aclose() and kill() leave nothing behind.",
    ),
    Rule(
        "EX-6",
        "crash_isolation",
        None,
        "A job that ends its executor's process (os._exit) gets outcome CRASHED and the "
        "pool goes on serving jobs.",
        requires=("isolates_crashes",),
        promise="A crash of the slot is an outcome (CRASHED), and disturbs no other executor.",
    ),
    Rule(
        "EX-7",
        "kill_running_job",
        None,
        "A job that only a kill stops (a sync job that never polls cancel_requested, or an "
        "async one) is stopped at its job_timeout (TIMED_OUT, well before it would end), "
        "and the pool goes on serving jobs.",
        requires=("can_kill_running_job",),
        promise="kill() stops a running job at once.",
    ),
    Rule(
        "EX-8",
        "sync_entrypoints",
        None,
        "A plain def entrypoint returns its value; one that raises gives FAILED/RAISED "
        "with the remote exception's type and message.",
        requires=("sync_entrypoints",),
        promise="A job's failure is data: FAILED/RAISED with a RemoteError.",
    ),
    Rule(
        "EX-9",
        "async_entrypoints",
        None,
        "An async def entrypoint returns its value; one that raises gives FAILED/RAISED "
        "with the remote exception's type and message.",
        requires=("async_entrypoints",),
        promise="A job's failure is data: FAILED/RAISED with a RemoteError.",
    ),
    Rule(
        "EX-10",
        "cancelled_start_leaves_nothing",
        10,
        "A start() cancelled by initialize_timeout or by a drain while its setup hangs "
        "leaves nothing behind (as EX-5 checks it), and the job waiting for it fails with "
        "ACQUIRE_FAILED.",
        promise="A cancelled start() leaves nothing behind.",
    ),
    Rule(
        "EX-11",
        "run_without_timeout_ended_at_drain",
        9,
        "A Pool.run() job without a timeout holds no cancel scope of the pool's: when it "
        "still runs as a drain's drain_timeout ends, the pool kills its executor. For each "
        "kind of entrypoint, on asyncio and trio, the job ends once, POOL_CLOSED (its "
        "caller gets JobFailed and is not left cancelled), the drain stays bounded, the "
        "executor is closed pool_closed (abandoned where a running job cannot be killed) "
        "and nothing is left (as EX-5 checks it); a run() job with a timeout still times "
        "out.",
        promise="kill() ends the run of a busy executor promptly, with a failed outcome.",
    ),
    Rule(
        "EX-12",
        "dead_idle_executor_replaced",
        None,
        "The process of an idle executor is killed from outside (SIGKILL to the pid its "
        "job reported): the pool closes it and is back at its idle target within "
        "ping_interval + initialize_timeout, and the next job succeeds. Skipped where the "
        "slot keeps no process between jobs.",
        requires=("isolates_crashes",),
        promise="health() says alive=False once the executor is dead (or wait_exited() returns).",
    ),
    Rule(
        "EX-13",
        "wedged_executor_found",
        None,
        "The process of a busy executor is stopped (SIGSTOP): its job ends UNRESPONSIVE "
        "within ping_timeout + 2 ping_interval (plus a margin), and the pool goes on "
        "serving. Skipped where health() reports no ping_latency.",
        requires=("isolates_crashes",),
        promise="health().ping_latency grows while the executor does not answer.",
    ),
    Rule(
        "EX-14",
        "memory_limit_enforced",
        None,
        "A job holding 128 MiB more than memory_limit_mb allows ends MEMORY_LIMIT within "
        "2 ping_interval (plus a margin), and the pool goes on serving.",
        requires=("measures_memory",),
        promise="health().memory_mb is the executor's real memory.",
    ),
    Rule(
        "EX-15",
        "graceful_close",
        None,
        "Pools with idle executors, executors that ran jobs of every ending and an "
        "executor still starting drain and close: every aclose() the pool calls returns "
        "within close_timeout on its own. A close that needs the pool's kill() fallback "
        "fails the rule.",
        promise="aclose() stops the slot gracefully, within close_timeout.",
    ),
    Rule(
        "EX-16",
        "ignored_cancellation_bounded",
        9,
        "A sync job that never polls cancel_requested ends TIMED_OUT within job_timeout + "
        "close_timeout (plus a margin), stopped or abandoned, and a drain while one runs "
        "returns within drain_timeout + close_timeout (plus a margin); the pool goes on "
        "serving.",
        requires=("sync_entrypoints",),
        promise="A cancelled run_job() returns within close_timeout, even when the job "
        "ignores cancellation (killed, or abandoned where it cannot be).",
    ),
    Rule(
        "SL-1",
        "lifecycle",
        None,
        "On a bare executor: create_executor() gives its id in state STARTING; start() "
        "leaves it READY and alive; jobs return their payloads (READY after each, where "
        "reusable); aclose() returns within close_timeout, CLOSED and not alive; aclose() "
        "and kill() again, after either, or before start(), return at once, never raise, "
        "and leave it CLOSED; wait_exited(), where provided, returns once it is closed.",
        promise="State STARTING -> READY <-> BUSY -> CLOSING -> CLOSED; aclose() and kill() "
        "are idempotent and never raise; wait_exited() returns once the executor is gone.",
    ),
    Rule(
        "SL-2",
        "failed_start_raises",
        None,
        "With a setup that raises, start() raises within initialize_timeout an exception "
        "that carries the setup's (as itself, its cause, or in its text), does not report "
        "READY, and aclose() then closes it.",
        promise="start() raises on failure, the setup's own exception where the setup raised.",
    ),
    Rule(
        "SL-3",
        "refuses_unless_ready",
        None,
        "run_job() before start(), after aclose() and after kill() raises LaunchError at "
        "once, and the witness shows the job's body never began.",
        promise="Raise LaunchError when the job was never accepted; a slot that is not "
        "READY accepts no job.",
    ),
    Rule(
        "SL-4",
        "one_job_at_a_time",
        2,
        "While a job runs (the witness saw its body begin), the executor reports BUSY and "
        "a second run_job() raises LaunchError without beginning its job; the first, "
        "cancelled, ends; for each kind of entrypoint.",
        promise="One execution slot: at most one job at a time.",
    ),
    Rule(
        "SL-5",
        "every_ending_is_an_outcome",
        1,
        "Jobs that return, raise, raise SystemExit, GeneratorExit or another BaseException "
        "(KeyboardInterrupt too where crashes are isolated), sleep, or crash the process "
        "(where crashes are isolated) each get one outcome of their own from run_job(), "
        "never an exception; after each, the state is honest: READY runs the next job, "
        "anything else refuses it; for each kind of entrypoint.",
        promise="A job's failure, a crash of the slot and a kill are outcomes, not exceptions.",
    ),
    Rule(
        "SL-6",
        "cancelled_run_stops_the_job",
        None,
        "run_job() cancelled while its job runs, and right after it was called, lets the "
        "cancellation propagate within close_timeout; the witness shows no job code after "
        "it returned; the state is then honest; for each kind of entrypoint.",
        promise="A cancelled run_job() lets the cancellation propagate and leaves nothing "
        "running, with state READY only if the slot can take another job.",
    ),
    Rule(
        "SL-7",
        "cancelled_start_returns",
        None,
        "start() cancelled while its setup hangs returns within close_timeout of the "
        "cancellation, does not report READY, and aclose() closes it; nothing is left "
        "behind (as EX-5 checks it).",
        promise="A cancelled start() leaves nothing behind.",
    ),
    Rule(
        "SL-8",
        "kill_stops_the_job",
        None,
        "kill() of a busy executor returns at once, and run_job() returns a failed "
        "outcome at once (where the backend can kill a running job: a sync job that never "
        "polls, or an async one, stops, and the witness shows none of its code after; "
        "elsewhere a cooperative job, within close_timeout); the executor is CLOSED and "
        "refuses jobs; for each kind of entrypoint.",
        promise="kill() stops at once, abandoning any running job; run_job() then returns "
        "promptly.",
    ),
    Rule(
        "SL-9",
        "wear",
        None,
        "One executor runs many jobs in a row (quick 50, ci 300, thorough 2000), that "
        "echo, raise and sleep: each gets its own outcome and the executor stays READY.",
        requires=("reusable",),
        promise="An executor can run more than one job.",
    ),
    Rule(
        "SL-10",
        "health_sees_death",
        None,
        "The process of an idle executor is killed from outside (SIGKILL to the pid its "
        "job reported): health().alive turns false within ping_interval (plus a margin), "
        "wait_exited() returns, the state is not READY and run_job() refuses. Skipped "
        "where the slot keeps no process between jobs.",
        requires=("isolates_crashes",),
        promise="health() is a true snapshot: alive is false once the executor is dead.",
    ),
    Rule(
        "SL-11",
        "health_measures_memory",
        None,
        "While a job holds 64 MiB, health().memory_mb rises by 32 MiB at least.",
        requires=("measures_memory",),
        promise="health().memory_mb is the executor's memory in MiB.",
    ),
    Rule(
        "SL-12",
        "health_sees_a_wedge",
        None,
        "The process of a busy executor is stopped (SIGSTOP): health().ping_latency grows "
        "past a second within ping_interval (plus a margin). Skipped where health() "
        "reports no ping_latency.",
        requires=("isolates_crashes",),
        promise="health().ping_latency counts from the oldest unanswered ping.",
    ),
    Rule(
        "SL-13",
        "slot_state_machine",
        2,
        "A Hypothesis state machine drives bare executors (asyncio or trio host) with "
        "start, submit, cancel, timeout, kill, crash, raise and close in any order, "
        "including orders the contract refuses. After every step: each run_job() ends "
        "once (an outcome, LaunchError or the cancellation); a refused job never began; "
        "the witness shows no two jobs at once, none run twice and no job code after its "
        "outcome; the reported state matches what the executor does.",
        promise="Every promise of the contract, in any order of calls.",
    ),
    Rule(
        "SL-14",
        "run_job_yields",
        None,
        "run_job() of a job that finishes at once (echo, or aecho where the backend runs "
        "async entrypoints) lets another task of the loop run before it returns, for each "
        "kind of entrypoint.",
        promise="run_job() yields to the event loop at least once, even for a job that "
        "is done at once.",
    ),
)


def rule(rule_id: str) -> Rule:
    """The rule with this id."""
    for candidate in RULES:
        if candidate.id == rule_id:
            return candidate
    msg = f"no rule {rule_id!r}"
    raise KeyError(msg)
