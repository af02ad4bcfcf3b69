"""The metadata store: an engine, short transactions, and the schema kept at head."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from mlpilot.errors import MlpilotError, StoreError
from mlpilot.store.engine import IMMEDIATE, make_engine
from mlpilot.store.migrate import upgrade

__all__ = ["Store", "now_ms"]


def now_ms() -> int:
    """Milliseconds since the Unix epoch: the store's one time unit."""
    return time.time_ns() // 1_000_000


class Store:
    """The metadata store at ``url``; migrates the schema to head on open.

    >>> store = Store("sqlite:///:memory:")
    >>> with store.write() as session:
    ...     pass
    """

    def __init__(self, url: str, *, busy_timeout: float = 60.0, migrate: bool = True) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, busy_timeout=busy_timeout)
        self.dialect = self.engine.dialect.name
        if migrate:
            try:
                upgrade(self.engine)
            except OperationalError as exc:
                self.engine.dispose()
                raise StoreError(f"cannot open metadata store {self.safe_url}: {exc.orig}") from exc
            except BaseException:
                self.engine.dispose()
                raise

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, fit for logs and errors."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed on normal exit and rolled back on error."""
        with self._session(immediate=True) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (never blocks writers on SQLite's WAL)."""
        with self._session(immediate=False) as session:
            yield session

    @contextmanager
    def _session(self, *, immediate: bool) -> Iterator[Session]:
        try:
            with self.engine.connect() as conn:
                conn.info[IMMEDIATE] = immediate
                with Session(bind=conn, expire_on_commit=False) as session, conn.begin():
                    yield session
                    session.flush()
        except MlpilotError:
            raise
        except SAIntegrityError:
            raise  # callers translate constraint violations into AlreadyExists/Conflict errors
        except SQLAlchemyError as exc:
            raise StoreError(f"metadata store error: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()
