"""Static files: what pages link is served; the manifest and source maps, which only the build needs, are not."""

import json

import pytest
from django.conf import settings
from django.test import Client

from server_config.paths import STATIC_MANIFEST


@pytest.fixture
def manifest() -> dict[str, str]:
    return json.loads((settings.STATIC_ROOT / STATIC_MANIFEST).read_text())["paths"]


def test_hashed_files_are_served_and_the_manifest_and_source_maps_are_not(manifest):
    client = Client()
    stylesheet = manifest["admin/css/base.css"]
    assert client.get(f"/static/{stylesheet}").status_code == 200
    maps = [name for name in manifest if name.endswith(".map")]
    assert maps, "no source map collected: this test would prove nothing"
    hidden = [f"/static/{STATIC_MANIFEST}", *(f"/static/{name}" for name in maps),
              *(f"/static/{manifest[name]}" for name in maps)]
    for path in hidden:
        for encoding in ("", "gzip", "br"):
            response = client.get(path, headers={"Accept-Encoding": encoding} if encoding else {})
            assert response.status_code == 404, (path, encoding)
