"""Static files as WhiteNoise serves them, minus what only the build needs: the manifest and source maps."""

from __future__ import annotations

from whitenoise.middleware import WhiteNoiseMiddleware

from .paths import STATIC_MANIFEST

# Source maps name the unminified sources and the manifest lists every file: neither is for clients.
HIDDEN_SUFFIXES = (".map", f"/{STATIC_MANIFEST}")


def hidden(url: str) -> bool:
    """Whether a static URL is kept from clients (its compressed variants included)."""
    return url.removesuffix(".gz").removesuffix(".br").endswith(HIDDEN_SUFFIXES)


class BuildFilesHiddenWhiteNoise(WhiteNoiseMiddleware):
    """WhiteNoise that answers 404 for the manifest and source maps, collected or found on demand."""

    def add_file_to_dictionary(self, url: str, path: str, stat_cache: dict | None = None) -> None:
        if not hidden(url):
            super().add_file_to_dictionary(url, path, stat_cache=stat_cache)

    def find_file(self, url: str) -> object | None:
        return None if hidden(url) else super().find_file(url)
