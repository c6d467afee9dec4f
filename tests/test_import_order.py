"""Every module imports first, in a fresh interpreter: no import cycle hides behind the order a process uses."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Below Django's app registry: importable with nothing set up first.
PLAIN_PACKAGES = ("envvars", "routing", "workers", "server_config")
# Models and what uses them (the URL configuration too) need the app registry: each is imported
# first right after django.setup().
NEEDS_APPS = ("weather", "server_config.urls")

# Forks once per module from an interpreter that has imported nothing of the project, so each
# child imports its module first; prints {module: error} for those that fail.
IMPORT_EACH_FIRST = """
import importlib, json, os, sys, traceback
setup, modules = sys.argv[1] == "django", sys.argv[2:]
# Third-party libraries loaded once, before the forks: they cannot take part in a cycle of ours.
import celery.app.task, django.contrib.admin.options, django.db.models, kombu, ninja, prometheus_client, requests
failures = {}
for module in modules:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            if setup:
                import django
                django.setup()
            importlib.import_module(module)
            message = ""
        except BaseException:
            message = traceback.format_exc(limit=-3)
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    if message:
        failures[module] = message
print(json.dumps(failures))
"""


def modules_of(package: str) -> list[str]:
    """The package and every module under it, migrations and __main__ left out."""
    found = [package]
    for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        found.append(info.name)
    return found


def needs_apps(module: str) -> bool:
    """Whether the module can only be imported once Django's app registry is ready."""
    return any(module == name or module.startswith(name + ".") for name in NEEDS_APPS)


def import_each_first(modules: list[str], django_setup: bool) -> dict[str, str]:
    """Import every module first in its own fresh child; the failures by module.

    Two runners share the modules, one per core: each child's imports take a while.
    """
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "server_config.settings"}
    runners = [subprocess.Popen([sys.executable, "-c", IMPORT_EACH_FIRST, "django" if django_setup else "plain",
                                 *modules[half::2]], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for half in (0, 1)]
    failures: dict[str, str] = {}
    for runner in runners:
        out, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, err
        failures.update(json.loads(out.strip().splitlines()[-1]))
    return failures


@pytest.mark.subprocess
def test_every_module_below_django_imports_first_without_django_set_up() -> None:
    modules = [m for package in PLAIN_PACKAGES for m in modules_of(package) if not needs_apps(m)]
    assert {"envvars", "routing.lanes", "workers.pools", "server_config.settings"} <= set(modules)
    assert import_each_first(modules, django_setup=False) == {}


@pytest.mark.subprocess
def test_every_module_that_needs_the_app_registry_imports_first_once_django_is_set_up() -> None:
    modules = [m for m in [*modules_of("weather"), *modules_of("server_config")] if needs_apps(m)]
    assert {"weather.models", "weather.tasks", "server_config.urls"} <= set(modules)
    assert import_each_first(modules, django_setup=True) == {}


@pytest.mark.subprocess
def test_the_launcher_lists_pools_without_loading_the_celery_app_or_the_domain() -> None:
    probe = (
        "import contextlib, io, json, sys\n"
        "from workers.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['list'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('weather', 'server_config'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
