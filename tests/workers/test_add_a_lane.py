"""Adding a lane, as the README tells a newcomer to, in a copy of the repository: four declarations, one render.

The copy gets a `reports` lane with a one-slot pool, a route and a task, and nothing
else by hand. Every file that names lanes or pool values then drifts (`render --check`
names each), one `python -m workers render all` brings them back, and the copy's own
service-free tests pass: the settings, the launcher, the Procfile, compose, .env.example,
the README, Kubernetes and the alert rules all carry the new lane. Then one pool default
is changed, and the same render carries it everywhere it shows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LANE, TASK = "reports", "weather.tasks.build_monthly_report"

# Declarations of README's "Adding a lane" that go after a line: (file, anchor, text inserted after it).
DECLARATIONS = (
    ("routing/lanes.py", 'MAINTENANCE = Lane("maintenance", "retention cleanup of readings and task results")\n',
     f'REPORTS = Lane("{LANE}", "monthly reports, one at a time")\n'),
    ("routing/routes.py", '    "weather.tasks.cleanup_old_weather_data": MAINTENANCE.name,\n',
     f'    "{TASK}": "{LANE}",\n'),
)
# The tests of what derives from the registry: settings, launcher, pools, routing, deployment files, the map.
DERIVED_TESTS = ("tests/workers", "tests/routing", "tests/deploy", "tests/server_config", "tests/weather",
                 "tests/test_readme_map.py")
POOL = f"""    Pool(
        name="{LANE}",
        concurrency=1,
        prefetch_multiplier=1,
        soft_time_limit=600,
        time_limit=660,
        max_tasks_per_child=10,
        max_memory_per_child_kb=300_000,
        max_replicas=1,
    ),
"""
TASK_CODE = f'''

@shared_task
def {TASK.rsplit(".", 1)[1]}() -> dict:
    """A report of the month so far (the lane's one task)."""
    return {{"cities": 0}}
'''


def _edit(path: Path, anchor: str, addition: str) -> None:
    text = path.read_text()
    assert text.count(anchor) == 1, f"{path}: the anchor moved; update this test and README's 'Adding a lane'"
    path.write_text(text.replace(anchor, anchor + addition))


def add_the_lane(repo: Path) -> None:
    """The declarations a newcomer writes: the lane, its pool, its route, its task."""
    for name, anchor, addition in DECLARATIONS:
        _edit(repo / name, anchor, addition)
    lanes = repo / "routing" / "lanes.py"
    _edit(lanes, "LANES: tuple[Lane, ...] = (INTERACTIVE, BULK, MAINTENANCE", ", REPORTS")
    pools = repo / "workers" / "pools.py"
    text = pools.read_text()
    end = text.index("\n)\n", text.index("DEFAULT_POOLS: tuple[Pool, ...] = ("))
    pools.write_text(text[:end + 1] + POOL + text[end + 1:])
    tasks = repo / "weather" / "tasks.py"
    tasks.write_text(tasks.read_text() + TASK_CODE)


def copy_of_the_repository(into: Path) -> Path:
    """The files a clone holds (and any new ones not yet committed); the interpreter is this checkout's."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def _run(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, text=True, timeout=240,
                          check=check, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


@pytest.mark.subprocess
def test_a_new_lane_is_four_declarations_and_one_render(tmp_path: Path) -> None:
    repo = copy_of_the_repository(tmp_path / "repo")
    add_the_lane(repo)

    stale = _run(repo, "-m", "workers", "render", "all", "--check", check=False)
    assert stale.returncode == 1
    drifted = {line.split(" differs")[0].split(str(repo) + "/")[1] for line in stale.stdout.splitlines()}
    assert drifted == {"Procfile", "docker-compose.yml", ".env.example", "README.md", "deploy/k8s/pools.yaml",
                       "deploy/prometheus/alerts.yml", "deploy/grafana/f-brain.json"}

    _run(repo, "-m", "workers", "render", "all")
    assert _run(repo, "-m", "workers", "render", "all", "--check").returncode == 0

    assert f"{LANE}: python -m workers run {LANE}\n" in (repo / "Procfile").read_text()
    service = yaml.safe_load((repo / "docker-compose.yml").read_text())["services"][f"worker-{LANE}"]
    assert service["environment"]["POOL_NAME"] == LANE
    assert service["command"] == ["python", "-m", "workers", "run", LANE]
    assert f"# WORKER_{LANE.upper()}_CONCURRENCY=1\n" in (repo / ".env.example").read_text()
    assert f"| `{LANE}` | monthly reports, one at a time | `build_monthly_report` |" in (repo / "README.md").read_text()
    scaled = [doc for doc in yaml.safe_load_all((repo / "deploy/k8s/pools.yaml").read_text())
              if doc["kind"] == "ScaledObject" and LANE in doc["metadata"]["name"]]
    assert len(scaled) == 1
    assert f'lane="{LANE}"' in (repo / "deploy/prometheus/alerts.yml").read_text()

    launched = _run(repo, "-m", "workers", "run", LANE, "--dry-run").stdout
    assert f"POOL_NAME={LANE}" in launched
    assert f"--queues {LANE} " in launched
    settings = _run(repo, "-c", "import json, django; django.setup(); from django.conf import settings; "
                                "print(json.dumps([q.name for q in settings.CELERY_TASK_QUEUES]))",
                    ).stdout.strip().splitlines()[-1]
    assert LANE in json.loads(settings)

    # A pool's default changed in the registry reaches every file that shows it, by the same render.
    pools = repo / "workers" / "pools.py"
    text = pools.read_text()
    bulk = text.index("name=BULK.name,")
    pools.write_text(text[:bulk] + text[bulk:].replace("concurrency=2,", "concurrency=3,", 1))
    stale = _run(repo, "-m", "workers", "render", "all", "--check", check=False)
    drifted = {line.split(" differs")[0].split(str(repo) + "/")[1] for line in stale.stdout.splitlines()}
    assert {".env.example", "README.md", "deploy/k8s/pools.yaml"} <= drifted
    assert "Procfile" not in drifted
    _run(repo, "-m", "workers", "render", "all")
    assert "# WORKER_BULK_CONCURRENCY=3\n" in (repo / ".env.example").read_text()
    assert "`bulk`: 3 slots" in (repo / "README.md").read_text()
    assert "6 + 3 + 1 + 1 = 11" in (repo / "README.md").read_text()

    # The copy's own service-free tests of everything the registry reaches hold with the fourth lane
    # (this test left out; the import-order tests too, which do not read the registry).
    fast = _run(repo, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not integration", *DERIVED_TESTS,
                "--deselect", "tests/workers/test_add_a_lane.py", check=False)
    assert fast.returncode == 0, fast.stdout[-3000:]
