"""Where the prediction log and the labels live, and the one place mlpilot.monitor opens DuckDB.

The model server writes the log as Hive-partitioned Parquet (``<url>/model=<name>/version=<n>/date=<day>/``);
labels go next to it under ``<url>/_labels/model=<name>/`` (served names cannot start with ``_``). Local
folders are read by DuckDB directly; other fsspec URLs (``s3://``, ``memory://``) through the fsspec
filesystem registered on the connection.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from mlpilot.errors import ArtifactError, InvalidInputError, MissingDependencyError

__all__ = ["LogLocation", "arrow_result", "check_endpoint", "import_duckdb", "quote", "sql_string"]

_ENDPOINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LABELS_DIR = "_labels"


def import_duckdb() -> ModuleType:
    """Import DuckDB, or explain which extra installs it."""
    try:
        import duckdb
    except ImportError as exc:
        raise MissingDependencyError("duckdb", "monitor") from exc
    return duckdb


def arrow_result(con: Any, query: str) -> Any:
    """The result of ``query`` as a ``pyarrow.Table``, through the relation API (no extra copy of the rows)."""
    relation = con.sql(query)
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow  # renamed in DuckDB 1.4
    return fetch()


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (column names come from users' models)."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def check_endpoint(name: str, field: str = "endpoint") -> str:
    """``name`` if it is a served model name (what the model server partitions its log by)."""
    if not isinstance(name, str) or not _ENDPOINT.match(name):
        raise InvalidInputError(
            f"{field}: expected a served model name (letters, digits, '_', '.', '-'; up to 128), got {name!r}",
            field=field,
        )
    return name


class LogLocation:
    """The prediction log folder at ``url`` and its labels, as fsspec paths and as DuckDB paths.

    >>> loc = LogLocation("/tmp/predictions")
    >>> loc.endpoint_glob("churn", version=3)
    '/tmp/predictions/model=churn/version=3/*/*.parquet'
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = str(root).rstrip("/")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple | list) else (self.fs.protocol,)
        self.local = "file" in protocols or "local" in protocols
        self._scheme = str(protocols[0])
        self._lock = threading.Lock()
        self._db: Any = None

    def _duck(self, path: str) -> str:
        return path if self.local else f"{self._scheme}://{path}"

    def endpoint_dir(self, endpoint: str) -> str:
        return f"{self.root}/model={endpoint}"

    def endpoint_glob(self, endpoint: str | None, version: int | None = None) -> str:
        """A DuckDB glob of the log's segments: one endpoint (and version), or every endpoint."""
        model = "*" if endpoint is None else endpoint
        ver = "*" if version is None else str(int(version))
        return self._duck(f"{self.root}/model={model}/version={ver}/*/*.parquet")

    def labels_dir(self, endpoint: str) -> str:
        return f"{self.root}/{LABELS_DIR}/model={endpoint}"

    def labels_glob(self, endpoint: str) -> str:
        return self._duck(f"{self.labels_dir(endpoint)}/*.parquet")

    def has_segments(self, folder: str) -> bool:
        """Whether any Parquet segment exists under ``folder`` (DuckDB refuses a glob matching nothing)."""
        try:
            return bool(self.fs.glob(f"{folder}/**/*.parquet") or self.fs.glob(f"{folder}/*.parquet"))
        except FileNotFoundError:
            return False

    def endpoints(self) -> list[str]:
        """Served names that have a log folder."""
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        names = [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]
        return sorted(n.split("=", 1)[1] for n in names if n.startswith("model="))

    def write_parquet(self, folder: str, table: Any) -> str:
        """Write ``table`` as a new segment in ``folder``: a dot-prefixed temporary name, then a rename, so
        readers (which glob ``*.parquet``) never see half a file."""
        import pyarrow.parquet as pq

        name = f"part-{time.time_ns() // 1_000_000}-{uuid.uuid4().hex[:12]}.parquet"
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{name}.tmp"
        with self.fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
        self.fs.mv(tmp, f"{folder}/{name}")
        return f"{folder}/{name}"

    @contextmanager
    def query(self) -> Iterator[Any]:
        """A DuckDB cursor for one read of the log; a failed query (a corrupt or unreadable segment) becomes an
        :class:`~mlpilot.errors.ArtifactError` naming the log."""
        duckdb = import_duckdb()
        con = self.connect()
        try:
            yield con
        except duckdb.Error as exc:
            raise ArtifactError(f"prediction log at {self.url}: cannot read it: {exc}") from exc
        finally:
            con.close()

    def connect(self) -> Any:
        """A DuckDB cursor of this location's database; close it when done. Cursors are cheap, isolated from
        each other (their registered tables are their own) and may be used from any one thread."""
        with self._lock:
            if self._db is None:
                duckdb = import_duckdb()
                db = duckdb.connect(":memory:", config={"preserve_insertion_order": False})
                if not self.local:
                    db.register_filesystem(self.fs)
                self._db = db
            return self._db.cursor()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
