"""The job set ``make demo`` runs: score generated sentences with a small word model.

    executors run examples.demo:work --setup examples.demo:load_model --jobs 200

``load_model`` is the setup: it runs when an executor starts (once per pool on the
coroutine backend) and what it returns reaches every job as ``ctx.state``. ``work`` is
the entrypoint; job ``n`` scores sentence number ``n`` (its payload).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Mapping

    from executors import JobContext

#: word -> sentiment weight in [-1, 1]; words not listed weigh 0
_LEXICON = """
    superb 1.0  great 0.8  good 0.6  fine 0.3  calm 0.2
    dull -0.3  slow -0.4  bad -0.6  broken -0.8  awful -1.0
"""
_NEUTRAL = ("the", "service", "was", "food", "and", "very", "today", "staff")
_VOCABULARY = (*_NEUTRAL, *_LEXICON.split()[::2])
SENTENCE_LENGTH = 8


def load_model() -> dict[str, float]:
    """Parse the lexicon into a word -> weight mapping (the "model" every job shares)."""
    fields = _LEXICON.split()
    return {word: float(weight) for word, weight in zip(fields[::2], fields[1::2], strict=True)}


def sentence(n: int) -> list[str]:
    """Sentence number ``n``: words chosen by a linear congruential generator seeded with
    ``n``, so that the same payload always yields the same sentence."""
    words, state = [], n
    for _ in range(SENTENCE_LENGTH):
        state = (state * 1103515245 + 12345) % 2**31
        words.append(_VOCABULARY[(state >> 16) % len(_VOCABULARY)])
    return words


def score(model: Mapping[str, float], words: list[str]) -> float:
    """The mean weight of ``words``: above 0 reads positive, below 0 negative."""
    return sum(model.get(word, 0.0) for word in words) / len(words)


def _scored(ctx: JobContext) -> dict[str, object]:
    n = ctx.payload
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"payload must be a sentence number (an integer), got {n!r}")
    if ctx.state is None:
        raise RuntimeError("no model: run with --setup examples.demo:load_model")
    words = sentence(n)
    return {"payload": n, "sentence": " ".join(words), "score": round(score(ctx.state, words), 3)}


async def work(ctx: JobContext) -> dict[str, object]:
    """Score sentence number ``ctx.payload`` with the model ``load_model`` built."""
    result = _scored(ctx)
    await anyio.sleep(0.01)  # stands for I/O, such as storing the result
    return result


def work_sync(ctx: JobContext) -> dict[str, object]:
    """:func:`work` as a plain function, for backends that run sync entrypoints."""
    result = _scored(ctx)
    time.sleep(0.01)
    return result


async def flaky(ctx: JobContext) -> dict[str, object]:
    """:func:`work`, except that it raises for every payload divisible by 10 (the tests
    use it to show failures in the summary of ``executors run``)."""
    if ctx.payload % 10 == 0:
        raise ValueError(f"payload {ctx.payload} is divisible by 10, and flaky refuses those")
    return await work(ctx)
