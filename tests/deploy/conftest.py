"""The project's image, built once a session for the compose suites."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tools.compose_stack import AppImage, build_app_image, engine_possible, engine_versions


@pytest.fixture(scope="session")
def app_image() -> AppImage:
    """The project's Dockerfile, built for real on the stand-in of its base image."""
    require(engine_possible(), "the compose suite (a Docker engine)")
    image = build_app_image()
    print(f"\n{image.tag}: built in {image.build_seconds:.1f} s, {image.size_bytes / 1e6:.0f} MB, user {image.user},"
          f" on {engine_versions()}")
    return image
