"""The project's image, built once a session for the compose suites."""

from __future__ import annotations

import os

import pytest

from tools.compose_stack import AppImage, build_app_image, engine_possible, engine_versions


@pytest.fixture(scope="session")
def app_image() -> AppImage:
    """The project's Dockerfile, built for real on the stand-in of its base image."""
    reason = engine_possible()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the compose suite, but: {reason}")
        pytest.skip(f"the compose suite needs a Docker engine: {reason}")
    image = build_app_image()
    print(f"\n{image.tag}: built in {image.build_seconds:.1f} s, {image.size_bytes / 1e6:.0f} MB, user {image.user},"
          f" on {engine_versions()}")
    return image
