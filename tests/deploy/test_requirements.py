"""Two pinned requirement sets: the runtime image carries no test or lint tool; development includes runtime."""

from __future__ import annotations

import re

from tools.harness import ROOT

# Tools for testing, linting and running the Procfile locally: never in the image.
DEVELOPMENT_ONLY = {"pytest", "pytest-django", "pytest-timeout", "hypothesis", "playwright", "ruff",
                    "import-linter", "schemathesis", "honcho", "pyyaml", "greenlet", "grimp", "werkzeug"}


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-r ")):
            continue
        package, sep, version = line.partition("==")
        assert sep, f"{name}: {line!r} is not pinned with =="
        assert version, f"{name}: {line!r} pins no version"
        pins[re.sub(r"[-_.]+", "-", package).lower()] = version
    return pins


def test_the_runtime_set_holds_no_test_or_lint_tool():
    runtime = _pins("requirements.txt")
    assert not DEVELOPMENT_ONLY & set(runtime), sorted(DEVELOPMENT_ONLY & set(runtime))
    assert {"django", "celery", "granian", "django-ninja", "whitenoise"} <= set(runtime)


def test_development_includes_runtime_and_pins_each_package_once():
    text = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in text.splitlines()
    runtime, development = _pins("requirements.txt"), _pins("requirements-dev.txt")
    assert not set(runtime) & set(development), "a package pinned in both files can drift apart"
    assert {"pytest", "ruff", "import-linter", "schemathesis", "playwright"} <= set(development)


def test_the_image_installs_the_runtime_set_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert installs == ["pip install -r requirements.txt"], installs
    assert "requirements-dev" not in dockerfile
