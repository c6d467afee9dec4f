"""API keys: made at random, stored as a hash, looked up by their prefix, refused once revoked."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone
from django.utils.crypto import constant_time_compare

from .models import ApiKey

PREFIX_LENGTH = 8


def _digest(key: str) -> str:
    # A key is 256 random bits, not a password a person chose: one SHA-256 cannot be
    # brute-forced, and a slow password hash would only cost every request time.
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(name: str, rate_limit_per_minute: int = 10) -> tuple[ApiKey, str]:
    """Create a key; returns its row and the key itself, which is never stored and shown only now."""
    row = ApiKey(name=name, rate_limit_per_minute=rate_limit_per_minute)
    key = set_new_secret(row)
    row.save()
    return row, key


def set_new_secret(row: ApiKey) -> str:
    """Give an unsaved key row its secret (the admin's add form); returns the key, shown once."""
    while True:
        key = secrets.token_urlsafe(32)
        if not ApiKey.objects.filter(prefix=key[:PREFIX_LENGTH]).exists():
            break
    row.prefix = key[:PREFIX_LENGTH]
    row.hashed_key = _digest(key)
    return key


def active_key(key: str) -> ApiKey | None:
    """The active key row this key opens, or None (unknown, wrong or revoked)."""
    if len(key) < PREFIX_LENGTH or len(key) > 200:
        return None
    row = ApiKey.objects.filter(prefix=key[:PREFIX_LENGTH], revoked_at__isnull=True).first()
    if row is None or not constant_time_compare(row.hashed_key, _digest(key)):
        return None
    ApiKey.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return row


def revoke(row: ApiKey) -> None:
    """Refuse this key from now on."""
    ApiKey.objects.filter(pk=row.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
