"""Online stores, chosen by URL at one composition point: :func:`open_online_store`.

    >>> store = open_online_store("sqlite:///:memory:")
    >>> store.read_watermark("txn") is None
    True
    >>> store.close()

``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` and ``sqlite:///:memory:`` open the default
SQLite store; ``redis://host:port/db?prefix=...`` (and ``rediss://``, ``unix://``) open Redis (``pip install
'mlpilot[redis]'``). Without a URL the store is ``<MLPILOT_HOME>/features/online.db``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlpilot.errors import InvalidInputError
from mlpilot.features.online.base import OnlineStore, PayloadReader, StoredRow

if TYPE_CHECKING:
    from mlpilot.features.online.redis import RedisOnlineStore
    from mlpilot.features.online.sqlite import SqliteOnlineStore

__all__ = ["OnlineStore", "PayloadReader", "StoredRow", "default_online_url", "open_online_store"]


def default_online_url(home: Path | None = None) -> str:
    """The SQLite store under ``home`` (default: the configured mlpilot home)."""
    if home is None:
        from mlpilot.config import load_settings

        home = load_settings().home
    return f"sqlite:///{home.resolve() / 'features' / 'online.db'}"


def open_online_store(url: str | None = None) -> SqliteOnlineStore | RedisOnlineStore:
    """Open the online store at ``url`` (default: :func:`default_online_url`)."""
    url = url or default_online_url()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidInputError(
            f"online store url: expected sqlite:///path or redis://host:port/db, got {url!r}", field="url"
        )
    if scheme == "sqlite":
        from mlpilot.features.online.sqlite import SqliteOnlineStore

        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise InvalidInputError(f"online store url: no database path in {url!r}", field="url")
        return SqliteOnlineStore(path)
    if scheme in ("redis", "rediss", "unix"):
        from mlpilot.features.online.redis import RedisOnlineStore

        return RedisOnlineStore.from_url(url)
    raise InvalidInputError(f"online store url: unsupported scheme {scheme!r} (expected sqlite or redis)", field="url")
