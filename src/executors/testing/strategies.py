"""Hypothesis strategies for the pool's invariant tests, and the invariants they check.

:func:`scripts` draws scripted jobs (:class:`~executors.testing.Script`),
:func:`programs` draws programs of steps for :func:`executors.testing._program.run_program`,
and :func:`check_invariants` checks, on what a program recorded, every invariant that holds
for any backend. Each backend's tests pick what differs: which scripts its jobs can
follow, how long they and the waits between steps take, how long a program is.

This module needs Hypothesis (the ``testing`` extra); ``executors.testing`` does not
import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st

from ._program import (
    Step,
    check_at_most_once,
    check_bounded_drain,
    check_bounds,
    check_exactly_one_outcome,
    check_no_leaks,
    check_one_job_per_slot,
)
from ._simulated import Script

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._program import ProgramResult

__all__ = ["check_invariants", "programs", "scripts"]


def scripts(
    *,
    seconds: Sequence[float],
    fail_seconds: Sequence[float] | None = None,
    crash_seconds: Sequence[float] = (),
    hang: bool = True,
    refuse: bool = False,
) -> st.SearchStrategy[Script]:
    """Scripted jobs: succeed with an integer after one of ``seconds``; fail ("boom")
    at once, or after one of ``fail_seconds``; crash the executor after one of
    ``crash_seconds`` (never if empty); if ``hang``, hang; if ``refuse``, be refused at
    launch."""
    fail_after = () if fail_seconds is None else (st.sampled_from(fail_seconds),)
    choices = [
        st.builds(Script.succeed, st.integers(), st.sampled_from(seconds)),
        st.builds(Script.fail, st.just("boom"), *fail_after),
    ]
    if crash_seconds:
        choices.append(st.builds(Script.crash, st.sampled_from(crash_seconds)))
    if hang:
        choices.append(st.just(Script.hang()))
    if refuse:
        choices.append(st.just(Script.refuse()))
    return st.one_of(choices)


def programs(
    jobs: st.SearchStrategy[Script],
    *,
    wait_seconds: Sequence[float],
    max_size: int,
    min_size: int = 0,
    max_cancel: int = 10,
    max_idle: int = 3,
) -> st.SearchStrategy[list[Step]]:
    """Programs of ``min_size`` to ``max_size`` steps: submit one of ``jobs``, cancel an
    earlier job (chosen by a number up to ``max_cancel``), wait one of ``wait_seconds``,
    set the idle target (up to ``max_idle``)."""
    return st.lists(
        st.one_of(
            st.builds(Step, st.just("submit"), jobs),
            st.builds(Step, st.just("cancel"), number=st.integers(0, max_cancel)),
            st.builds(Step, st.just("wait"), seconds=st.sampled_from(wait_seconds)),
            st.builds(Step, st.just("idle"), number=st.integers(0, max_idle)),
        ),
        min_size=min_size,
        max_size=max_size,
    )


def check_invariants(result: ProgramResult, *, margin: float) -> None:
    """Invariants 1, 2, 4, 5, 6, 9 and 10 of ``docs/architecture.md``, on what a program
    recorded; the drain may take ``margin`` seconds past its bound (invariant 9).
    Invariant 4 (nothing warmed is dropped) is part of :func:`check_no_leaks`."""
    check_exactly_one_outcome(result)
    check_one_job_per_slot(result)
    check_at_most_once(result)
    check_bounds(result)
    check_bounded_drain(result, margin=margin)
    check_no_leaks(result)
