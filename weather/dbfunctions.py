"""Whether the database holds the SQL functions that do a locked write in one round trip (migration 0013)."""

from __future__ import annotations

from django.db import connection

# Databases the functions are created on; elsewhere (SQLite) the same steps run through the ORM.
VENDORS = frozenset({"postgresql"})


def available() -> bool:
    """True when the default database runs the functions."""
    return connection.vendor in VENDORS
