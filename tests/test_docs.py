"""The examples in README.md and docs/*.md run as written, and their links resolve.

Convention for fenced code blocks:

- A block whose info string is exactly ``python`` is executed; any other info string
  (``python notest`` for fragments such as protocol signatures, ``toml``, ``console``)
  is not here. ``python ray`` blocks need a Ray: the ray backend's tests run them
  (plugins/ray/tests/test_ray_docs.py), on the local Ray of their session.
- Each executed block runs with ``exec`` in a fresh namespace, with the repository root
  as the working directory and first on ``sys.path`` (so ``examples.docs_jobs:double``
  and ``tests.jobs`` import), and with no ``EXECUTORS_*`` variable set.
- A top-level line ``anyio.run(main)`` is left out: if the block defines ``main``, the
  test runs it with ``anyio.run`` under a 30 s ``anyio.fail_after``. Then every function
  the block defines whose name starts with ``test_`` is called without arguments.
- A block whose first line is ``# examples/<name>.py`` must be that file, verbatim: the
  file is linted and type-checked, the block shows it.

``toml`` blocks must parse, and those with a ``[tool.executors]`` table must load.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import attrs
import pytest

from executors import load_config

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAIN_TIMEOUT = 30.0

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`]*)$")
_RUN_MAIN = re.compile(r"^anyio\.run\(main\)\s*$", re.MULTILINE)
_COPY_OF = re.compile(r"\A# (?P<path>examples/\w+\.py)\n")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    page: Path
    #: line number (from 1) of the opening fence
    line: int
    info: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> Iterator[Block]:
    """Every fenced block of ``page``, its code dedented by the fence's indentation."""
    lines = page.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        opening = _FENCE.match(lines[number])
        number += 1
        if opening is None:
            continue
        indent, body = opening["indent"], []
        while number < len(lines) and lines[number].strip() != "```":
            body.append(lines[number].removeprefix(indent))
            number += 1
        assert number < len(lines), f"{page.name}: the fence opened on line {number} never closes"
        start = number - len(body)
        number += 1
        yield Block(page, start, opening["info"].strip(), "\n".join(body) + "\n")


def blocks(info: str) -> list[Block]:
    return [block for page in PAGES for block in fenced_blocks(page) if block.info == info]


def prose(page: Path) -> str:
    """``page`` without its fenced blocks (links in code are not links)."""
    fenced = {block.line for block in fenced_blocks(page)}
    kept, inside = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if number in fenced or (inside and line.strip() == "```"):
            inside = not inside
            continue
        if not inside:
            kept.append(line)
    return "\n".join(kept)


# -- python blocks ------------------------------------------------------------------------

PYTHON = blocks("python")


@pytest.fixture
def in_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    for name in list(os.environ):
        if name.startswith("EXECUTORS_"):
            monkeypatch.delenv(name)


def run_block(block: Block) -> None:
    # Blank lines in front keep the page's line numbers in tracebacks.
    source = "\n" * block.line + _RUN_MAIN.sub("", block.code)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(source, str(block.page), "exec"), namespace)
    main = namespace.get("main")
    if main is not None:
        assert callable(main)

        async def bounded() -> None:
            with anyio.fail_after(MAIN_TIMEOUT):
                await main()

        anyio.run(bounded)
    tests: list[Callable[[], object]] = [
        value for name, value in namespace.items() if name.startswith("test_") and callable(value)
    ]
    for test in tests:
        test()


def join_stopped_runtime_threads(before: set[threading.Thread]) -> None:
    """anyio's asyncio worker threads are told to stop when their event loop ends, but
    nothing waits for them; wait here, so the leak check after the test sees them gone."""
    for thread in threading.enumerate():
        if thread not in before and thread.name == "AnyIO worker thread":
            thread.join(timeout=5.0)


@pytest.mark.usefixtures("in_repository")
@pytest.mark.parametrize("block", PYTHON, ids=[block.id for block in PYTHON])
def test_python_block_runs(block: Block) -> None:
    before = set(threading.enumerate())
    try:
        run_block(block)
    finally:
        join_stopped_runtime_threads(before)


def test_there_are_python_blocks_to_run() -> None:
    pages = {block.page.name for block in PYTHON}
    assert {"README.md", "getting-started.md", "writing-a-backend.md"} <= pages


def test_no_python_block_is_skipped_by_a_typo() -> None:
    """Only ``python`` runs here (``python ray`` in the ray backend's tests); any other
    python info string must be ``python notest``."""
    infos = {block.info for page in PAGES for block in fenced_blocks(page)}
    pythonish = {info for info in infos if info.split(" ")[0] in ("py", "python", "python3")}
    assert pythonish <= {"python", "python notest", "python ray"}


COPIES = [block for block in PYTHON if _COPY_OF.match(block.code)]


@pytest.mark.parametrize("block", COPIES, ids=[block.id for block in COPIES])
def test_block_is_its_file_verbatim(block: Block) -> None:
    match = _COPY_OF.match(block.code)
    assert match is not None
    assert block.code == (ROOT / match["path"]).read_text(encoding="utf-8")


# -- toml blocks --------------------------------------------------------------------------

TOML = blocks("toml")


@pytest.mark.parametrize("block", TOML, ids=[block.id for block in TOML])
def test_toml_block_parses_and_loads(block: Block, tmp_path: Path) -> None:
    document = tomllib.loads(block.code)
    if "executors" in document.get("tool", {}):
        (tmp_path / "pyproject.toml").write_text(block.code, encoding="utf-8")
        load_config(directory=tmp_path, environ={})


# -- links ----------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.*)$", prose(page), flags=re.MULTILINE)
    return {slug(heading) for heading in headings}


def links() -> list[tuple[Path, str]]:
    return [
        (page, match["target"])
        for page in PAGES
        for match in _LINK.finditer(prose(page))
        if not _SCHEME.match(match["target"])
    ]


LINKS = links()


@pytest.mark.parametrize(("page", "target"), LINKS, ids=[f"{p.name}->{t}" for p, t in LINKS])
def test_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
    assert resolved.is_relative_to(ROOT), f"{page.name} links outside the repository"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {path}"


# -- names of tests the architecture page cites ------------------------------------------


def test_tests_cited_by_the_architecture_page_exist() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"`((?:test_|invariant_)\w+)`", page))
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for pattern in ("tests/**/*.py", "plugins/*/tests/**/*.py")
        for path in ROOT.glob(pattern)
    )
    missing = sorted(name for name in cited if not re.search(rf"\b{name}\b", sources))
    assert not missing, f"docs/architecture.md cites tests that do not exist: {missing}"
