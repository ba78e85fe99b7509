"""A CA directory on disk: one SQLite database holds the whole state, published files derive from it.

Every change is one SQLite transaction taken under the directory's lock, so a kill at any point
leaves either the old state or the new one. The files other programs read (`ca.crt`,
`trust-bundle.pem`, `crl.pem`, `audit.jsonl`) are derived from the database, replaced atomically
after each commit, and brought up to date again by the next write if a kill interrupted that.

Only this package speaks SQL: `CaStore` opens the database and holds its lock and transactions,
`Inventory` reads and changes the records through named, typed methods.
"""

from plantline.pki.store.directory import (
    DB_NAME,
    KILL_POINT_ENV,
    PUBLIC_MODE,
    SECRET_MODE,
    CaStore,
    Published,
    atomic_write,
    kill_point,
    write_new_file,
)
from plantline.pki.store.inventory import Inventory

__all__ = [
    "DB_NAME",
    "KILL_POINT_ENV",
    "PUBLIC_MODE",
    "SECRET_MODE",
    "CaStore",
    "Inventory",
    "Published",
    "atomic_write",
    "kill_point",
    "write_new_file",
]
