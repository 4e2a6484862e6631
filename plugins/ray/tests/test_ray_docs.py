"""The ``python ray`` blocks of the docs run as written, on this session's local Ray, as
tests/test_docs.py runs the others (its conventions, its runner)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _docs_tests() -> Any:
    spec = importlib.util.spec_from_file_location("docs_tests", ROOT / "tests" / "test_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCS = _docs_tests()
BLOCKS = DOCS.blocks("python ray")


def test_the_ray_page_has_blocks_to_run() -> None:
    assert {block.page.name for block in BLOCKS} >= {"ray.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_ray_block_runs(block: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    for name in list(os.environ):
        if name.startswith("EXECUTORS_"):
            monkeypatch.delenv(name)
    DOCS.run_block(block)
