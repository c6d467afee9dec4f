"""Files rendered from the registry: written, or compared with what is written (`--check`, the drift tests)."""

from __future__ import annotations

from pathlib import Path


def write_or_check(rendered: dict[Path, str], command: str, check: bool = False) -> int:
    """Write each file, or with `check` exit 1 naming each one that differs from what `command` would write."""
    if check:
        stale = sorted(path for path, text in rendered.items() if not path.exists() or path.read_text() != text)
        for path in stale:
            print(f"workers: {path} differs from the registry: run `{command}`")
        return 1 if stale else 0
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0
