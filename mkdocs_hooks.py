"""MkDocs hooks for the docs site (``make docs``): the pages stay plain Markdown that reads
well where the repository is browsed, and these adapt two things for the site.

- Code fences tagged for the docs tests (```python notest, ```python ray) become plain
  ```python fences: Markdown takes one word after the fence.
- A link into the repository outside ``docs/`` (a module, a test, an example) has no page
  on the site: it becomes the file's path, as code, next to its text.
"""

from __future__ import annotations

import re
from typing import Any

_TAGGED_FENCE = re.compile(r"^(\s*```python)[ \t]+\w+[ \t]*$", re.MULTILINE)
#: [text](../path) where the path leaves docs/ (a file or a directory of the repository)
_OUTSIDE_LINK = re.compile(r"\[([^\]]+)\]\(\.\./([^)#\s]+)(#[^)]*)?\)")


def on_page_markdown(markdown: str, **_: Any) -> str:
    markdown = _TAGGED_FENCE.sub(r"\1", markdown)
    return _OUTSIDE_LINK.sub(_as_path, markdown)


def _as_path(match: re.Match[str]) -> str:
    text, path = match.group(1), match.group(2)
    if text.strip("`") == path:
        return f"`{path}`"
    return f"{text} (`{path}`)"
