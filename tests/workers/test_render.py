"""What is rendered from the registry is what the repository holds, and a hand-written file keeps its markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.pools import load_pools
from workers.render import TARGETS, rendered
from workers.render.files import RenderError, block_markers, replace_block


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_rendered_file_is_what_the_registry_renders(target: str) -> None:
    files = rendered(target, load_pools({}))
    assert files
    drifted = [str(path) for path, text in files.items() if path.read_text() != text]
    assert drifted == [], f"run `python -m workers render {target}`"


def test_a_block_is_replaced_between_its_markers_and_the_rest_is_kept(tmp_path: Path) -> None:
    opening, closing = block_markers("env:pools")
    text = f"KEEP=1\n{opening}\nstale\n{closing}\nALSO=2\n"
    assert replace_block(tmp_path / ".env", text, "env:pools", "# FRESH=3\n") == \
        f"KEEP=1\n{opening}\n# FRESH=3\n{closing}\nALSO=2\n"


def test_a_file_that_lost_its_markers_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"no block between .*env:pools"):
        replace_block(tmp_path / ".env", "KEEP=1\n", "env:pools", "# FRESH=3\n")
