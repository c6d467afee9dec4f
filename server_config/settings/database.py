"""The database: DATABASE_URL, POSTGRES_* or SQLite (server_config/backing.py), and TCP keepalive for every peer."""

from __future__ import annotations

from .. import backing
from .core import VAR_DIR, refuse_placeholder

# A peer that vanishes (a host cut off, a broker or database gone without closing):
# probe an idle connection after KEEPALIVE_IDLE_S, then every KEEPALIVE_INTERVAL_S, and
# give up after KEEPALIVE_PROBES unanswered probes (found dead within 25 s), for the
# database and the broker alike.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 10, 5, 3

# DATABASE_URL (a PaaS's add-on) wins; else POSTGRES_* with USE_POSTGRES=true; else SQLite under
# VAR_DIR (server_config/backing.py). Connections are kept CONN_MAX_AGE (POSTGRES_CONN_MAX_AGE).
DATABASES = {"default": backing.database(VAR_DIR, (KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES),
                                         refuse_placeholder)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
