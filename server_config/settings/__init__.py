"""Django settings for F_BRAIN, read from the environment (.env.example), one module per concern.

Importing them creates nothing on disk and imports no domain code beyond declarations
(routing, the pool registry, the provider's limits, the periodic work): import-linter
holds them to it. worker.py comes last: a pool's worker overrides what it must.
"""

from .core import *  # noqa: F403
from .database import *  # noqa: F403
from .domain import *  # noqa: F403
from .messaging import *  # noqa: F403
from .security import *  # noqa: F403

# isort: split
# Last: for a pool's worker, its role's settings replace the defaults above.
from .worker import *  # noqa: F403
