"""What commands share: settings, the local store, and the SDK client."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from mlpilot.config import Settings, load_settings
from mlpilot.store import Store

if TYPE_CHECKING:
    from mlpilot.client import Client

__all__ = ["client", "local_store", "settings", "url_option"]


@cache
def settings() -> Settings:
    return load_settings()


def local_store() -> Store:
    s = settings()
    store = Store(s.resolved_db_url, busy_timeout=s.sqlite_busy_timeout)
    _close_with_command(store.close)
    return store


def client(url: str | None = None) -> Client:
    """The SDK client for CLI commands: ``--url``, else MLPILOT_SERVER_URL, else the embedded store."""
    from mlpilot.client import Client

    c = Client(url, settings=settings())
    _close_with_command(c.close)
    return c


def _close_with_command(close: Callable[[], None]) -> None:
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(close)


def url_option(func: Any) -> Any:
    """``--url``: a server or database URL to act on instead of the settings."""
    import click

    return click.option(
        "--url", default=None, metavar="URL", help="Server (http://…) or database URL; default from settings."
    )(func)
