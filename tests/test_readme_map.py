"""The README's "Where things live" names every module of every package, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server_config", "envvars", "routing", "workers", "weather", "tools", "bench")
SECTION = re.compile(r"^([a-z_]+(?:/[a-z_]+)*)/\s", re.MULTILINE)
MODULE = re.compile(r"(?<![\w/.])([A-Za-z_]\w*\.py)\b")


def the_map() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Where things live")
    opening = text.index("```\n", start) + 4
    return text[opening:text.index("```\n", opening)]


def sections(block: str) -> dict[str, set[str]]:
    """Each folder line of the map (a line starting with `folder/`) and the modules named until the next one."""
    found = list(SECTION.finditer(block))
    return {match.group(1): set(MODULE.findall(block[match.end():found[i + 1].start() if i + 1 < len(found) else None]))
            for i, match in enumerate(found)}


def modules_by_folder() -> dict[str, set[str]]:
    """Every folder of the project's packages that holds a module besides __init__.py, and those modules."""
    folders: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts or path.name == "__init__.py":
                continue
            folders.setdefault(str(path.parent.relative_to(ROOT)), set()).add(path.name)
    return folders


def test_every_module_is_on_the_map_under_its_folder() -> None:
    mapped = sections(the_map())
    actual = modules_by_folder()
    assert "weather" in actual
    assert "workers/render" in actual
    missing = {folder: sorted(names - mapped.get(folder, set())) for folder, names in actual.items()}
    assert {folder: names for folder, names in missing.items() if names} == {}, \
        "add these to README's 'Where things live'"


def test_the_map_names_nothing_that_is_gone() -> None:
    mapped = sections(the_map())
    assert all((ROOT / folder).is_dir() for folder in mapped), [f for f in mapped if not (ROOT / f).is_dir()]
    stale = {folder: sorted(name for name in names if not (ROOT / folder / name).is_file())
             for folder, names in mapped.items()}
    assert {folder: names for folder, names in stale.items() if names} == {}
