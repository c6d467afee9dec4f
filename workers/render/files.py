"""Files rendered from the registry: written, or compared with what is written (`--check`, the drift tests)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class RenderError(ValueError):
    """A hand-written file lost the markers around its rendered block."""


def write_or_check(rendered: dict[Path, str], command: str, check: bool = False) -> int:
    """Write each file, or with `check` exit 1 naming each one that differs from what `command` would write."""
    if check:
        stale = sorted(path for path, text in rendered.items() if not path.exists() or path.read_text() != text)
        for path in stale:
            print(f"workers: {path} differs from the registry: run `{command}`")
        return 1 if stale else 0
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


def block_markers(name: str, comment: str = "#", close: str = "") -> tuple[str, str]:
    """The opening and closing lines around a rendered block in a hand-written file; `name` is "target[:part]"."""
    target = name.split(":")[0]
    return (f"{comment} >>> {name}: rendered by `python -m workers render {target}` from the registry; edit "
            f"workers/pools.py or routing/, not these lines{close}",
            f"{comment} <<< end of {name}{close}")


def replace_block(path: Path, text: str, name: str, body: str, comment: str = "#", close: str = "") -> str:
    """`text` (of `path`) with its rendered block, between the markers (kept), holding `body`."""
    opening, closing = block_markers(name, comment, close)
    pattern = re.compile(rf"^([ \t]*){re.escape(opening)}\n.*?^[ \t]*{re.escape(closing)}$", re.DOTALL | re.MULTILINE)
    found = pattern.search(text)
    if found is None:
        raise RenderError(f"{path}: no block between {opening!r} and {closing!r}")
    indent = found.group(1)
    block = f"{indent}{opening}\n{body}{indent}{closing}"
    return text[:found.start()] + block + text[found.end():]
