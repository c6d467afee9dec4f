"""What is rendered from the registry is what the repository holds, and a hand-written file keeps its markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.__main__ import main
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


def test_committed_files_show_the_defaults_whatever_this_shell_overrides(monkeypatch, capsys) -> None:
    monkeypatch.setenv("WORKER_BULK_CONCURRENCY", "5")
    assert main(["render", "all", "--check"]) == 0, capsys.readouterr().out


def test_manifests_rendered_elsewhere_take_this_shell_s_overrides(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORKER_BULK_MAX_REPLICAS", "9")
    assert main(["render", "k8s", "--out", str(tmp_path)]) == 0
    assert "maxReplicaCount: 9" in (tmp_path / "pools.yaml").read_text()
