"""Where a process keeps its state and the collected static files (VAR_DIR, STATIC_ROOT), read without Django."""

from __future__ import annotations

from pathlib import Path

from envvars import env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# What `collectstatic` writes beside the files: the hashed names, for the build, never for clients.
STATIC_MANIFEST = "staticfiles.json"


def var_dir() -> Path:
    """VAR_DIR, default var/ in the checkout: SQLite, the filesystem broker, the collected static files."""
    return Path(env_str("VAR_DIR", str(BASE_DIR / "var")))


def static_root() -> Path:
    """STATIC_ROOT, default VAR_DIR/static."""
    return Path(env_str("STATIC_ROOT", str(var_dir() / "static")))


def static_collected() -> bool:
    """Whether `collectstatic` has filled STATIC_ROOT (its manifest is there)."""
    return (static_root() / STATIC_MANIFEST).is_file()
