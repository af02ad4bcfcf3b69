"""Where feature rows come from: Parquet files, an in-memory table, or a DuckDB SQL query over other sources.

Each source renders itself as a DuckDB ``FROM`` clause and serializes to a canonical spec::

    >>> from mlpilot.features.sources import ParquetSource, SqlSource
    >>> ParquetSource("data/txn/*.parquet").to_spec()
    {'type': 'parquet', 'paths': ['data/txn/*.parquet']}
    >>> query = SqlSource("SELECT * FROM txn WHERE amount > 0", inputs={"txn": ParquetSource("t.parquet")})
    >>> query.to_spec()["type"]
    'sql'

Relative Parquet paths resolve against the folder of the definitions file that declared them (or the working
directory for sources built in plain Python). Paths may also be ``s3://bucket/prefix/*.parquet`` globs (the
``s3`` extra; see :mod:`mlpilot.features._remote` for how the store is configured).
"""

from __future__ import annotations

import abc
import glob
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpilot.errors import InvalidInputError
from mlpilot.features._duckdb import quote, sql_string
from mlpilot.features._remote import expand_remote, is_remote

if TYPE_CHECKING:
    from mlpilot.features._duckdb import DuckSession

__all__ = ["SF", "SR", "ParquetSource", "Source", "SqlSource", "TableSource", "source_from_spec"]

# A row's position in source order, (file index, row number in the file): stable across scans of the same data,
# so the training-set join can find winners on narrow rows and fetch their features by position, and so "the
# later row in the source wins" ties between rows with equal keys and timestamps.
SF = "__mlpilot_sf"
SR = "__mlpilot_sr"
_VIRTUAL = ("file_index", "file_row_number")
_GLOB_CHARS = re.compile(r"[*?\[]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Source(abc.ABC):
    """A table of feature rows. Subclasses render a DuckDB ``FROM`` clause and a canonical spec."""

    @abc.abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """A JSON-able description; equal specs mean the same declared source."""

    @abc.abstractmethod
    def from_sql(self, session: DuckSession) -> str:
        """A ``FROM`` clause for this source in ``session``."""

    def positional_sql(self, session: DuckSession, columns: Sequence[str]) -> str | None:
        """A ``FROM`` clause adding the position columns :data:`SF` and :data:`SR`, or ``None`` when this source
        cannot give stable positions (the caller then materializes it once). ``columns`` are the source's."""
        return None

    def rebased(self, base_dir: Path) -> Source:
        """This source with relative paths resolved against ``base_dir`` (sources without paths: itself)."""
        return self

    def schema(self, session: DuckSession) -> dict[str, str]:
        """Column name -> DuckDB type."""
        return session.describe(self.from_sql(session))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(repr(self.to_spec()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_spec()!r})"


class ParquetSource(Source):
    """Parquet files: a path, a glob (``data/*.parquet``, ``data/**/*.parquet``) or a list of them.

    >>> ParquetSource(["history/*.parquet", "pushed/txn/*.parquet"]).paths
    ('history/*.parquet', 'pushed/txn/*.parquet')
    """

    def __init__(self, path: str | Path | Sequence[str | Path], *, base_dir: str | Path | None = None) -> None:
        raw = [path] if isinstance(path, str | Path) else list(path)
        if not raw or any(not str(p) for p in raw):
            raise InvalidInputError("source.path: expected a non-empty path or list of paths", field="source.path")
        self.paths: tuple[str, ...] = tuple(str(p) for p in raw)
        self.base_dir = Path(base_dir) if base_dir is not None else None

    def to_spec(self) -> dict[str, Any]:
        return {"type": "parquet", "paths": list(self.paths)}

    def rebased(self, base_dir: Path) -> ParquetSource:
        return ParquetSource(self.paths, base_dir=self.base_dir or base_dir)

    @property
    def remote(self) -> bool:
        """Whether any path is a URL (``s3://…``) rather than a local path."""
        return any(is_remote(p) for p in self.paths)

    def files(self) -> list[str]:
        """The files (or object URLs) this source reads now; globs are expanded and sorted."""
        base = self.base_dir or Path.cwd()
        found: list[str] = []
        for pattern in self.paths:
            if is_remote(pattern):
                found.extend(expand_remote(pattern))
                continue
            full = Path(pattern).expanduser()
            full = full if full.is_absolute() else base / full
            if _GLOB_CHARS.search(pattern):
                found.extend(sorted(glob.glob(str(full), recursive=True)))
            elif full.is_file():
                found.append(str(full))
            elif full.is_dir():
                found.extend(sorted(glob.glob(str(full / "**" / "*.parquet"), recursive=True)))
            else:
                raise InvalidInputError(f"source.path: no such file {full}", field="source.path")
        if not found:
            raise InvalidInputError(
                f"source.path: no Parquet file matches {', '.join(self.paths)}", field="source.path"
            )
        return found

    def from_sql(self, session: DuckSession) -> str:
        return f"read_parquet({self._file_list(session)})"

    def positional_sql(self, session: DuckSession, columns: Sequence[str]) -> str | None:
        if any(name in columns for name in _VIRTUAL):
            return None  # a real column would shadow DuckDB's virtual one
        return (
            f"(SELECT *, CAST(file_index AS BIGINT) AS {SF}, CAST(file_row_number AS BIGINT) AS {SR} "
            f"FROM read_parquet({self._file_list(session)}))"
        )

    def _file_list(self, session: DuckSession) -> str:
        # Once per session: the index and feature queries of one join must agree on file positions even if
        # files land in between.
        files: list[str] = session.memo(("parquet", self.base_dir, self.paths), self.files)
        for url in {f.split("://", 1)[0] + "://": f for f in files if is_remote(f)}.values():
            session.use_remote(url)
        return "[" + ", ".join(sql_string(f) for f in files) + "]"


class TableSource(Source):
    """An in-memory table: a pyarrow Table, a pandas or polars DataFrame, or a list of row dicts.

    The data itself is not part of the spec (only its schema), so a registry keeps the declaration and a
    definition rebuilt from a spec must be given its table again with :meth:`bind`.

    >>> import pyarrow as pa
    >>> TableSource(pa.table({"id": [1], "x": [0.5]})).to_spec()
    {'type': 'table', 'schema': {'id': 'int64', 'x': 'double'}}
    """

    def __init__(self, table: Any, *, schema: Mapping[str, str] | None = None) -> None:
        from mlpilot.features._frames import to_arrow

        self.table = None if table is None else to_arrow(table, field="source.table")
        if self.table is not None:
            self._schema = {f.name: str(f.type) for f in self.table.schema}
        elif schema is not None:
            self._schema = dict(schema)
        else:
            raise InvalidInputError("source.table: expected a table", field="source.table")

    def bind(self, table: Any) -> TableSource:
        """This declaration with its data attached."""
        return TableSource(table)

    def to_spec(self) -> dict[str, Any]:
        return {"type": "table", "schema": dict(self._schema)}

    def from_sql(self, session: DuckSession) -> str:
        return session.register_table(self._data())

    def positional_sql(self, session: DuckSession, columns: Sequence[str]) -> str | None:
        import pyarrow as pa

        table = self._data()
        name = session.register_table(table.append_column(SR, pa.array(range(table.num_rows), pa.int64())))
        return f"(SELECT *, CAST(0 AS BIGINT) AS {SF} FROM {name})"

    def _data(self) -> Any:
        if self.table is None:
            raise InvalidInputError(
                "source.table: this in-memory table source was rebuilt from its spec and has no data; "
                "attach the table with TableSource.bind(table)",
                field="source.table",
            )
        return self.table


class SqlSource(Source):
    """A DuckDB SQL query whose table names refer to other sources.

    >>> txn = ParquetSource("txn.parquet")
    >>> source = SqlSource(
    ...     "SELECT customer_id, ts, amount * rate AS amount_eur FROM txn JOIN fx USING (currency)",
    ...     inputs={"txn": txn, "fx": ParquetSource("fx.parquet")},
    ... )

    Rows of a SQL source have no intrinsic order: when two rows share an entity key and the same timestamps,
    the query should make them distinct (for example with an availability time).
    """

    def __init__(self, query: str, inputs: Mapping[str, Source] | None = None) -> None:
        if not query.strip():
            raise InvalidInputError("source.query: expected a SQL query", field="source.query")
        self.query = query.strip().rstrip(";")
        self.inputs: dict[str, Source] = dict(inputs or {})
        for name, source in self.inputs.items():
            if not _NAME.match(name):
                raise InvalidInputError(
                    f"source.inputs: {name!r} is not a valid table name (letters, digits, underscores)",
                    field=f"source.inputs.{name}",
                )
            if not isinstance(source, Source):
                raise InvalidInputError(
                    f"source.inputs.{name}: expected a source, got {type(source).__name__}",
                    field=f"source.inputs.{name}",
                )

    def to_spec(self) -> dict[str, Any]:
        return {
            "type": "sql",
            "query": self.query,
            "inputs": {name: self.inputs[name].to_spec() for name in sorted(self.inputs)},
        }

    def rebased(self, base_dir: Path) -> SqlSource:
        return SqlSource(self.query, {name: s.rebased(base_dir) for name, s in self.inputs.items()})

    def from_sql(self, session: DuckSession) -> str:
        ctes = ", ".join(
            f"{quote(name)} AS (SELECT * FROM {source.from_sql(session)})" for name, source in self.inputs.items()
        )
        body = f"SELECT * FROM ({self.query})"
        return f"(WITH {ctes} {body})" if ctes else f"({body})"


def source_from_spec(spec: Mapping[str, Any], *, base_dir: Path | None = None) -> Source:
    """Rebuild a source from :meth:`Source.to_spec` output (or the same shape written in YAML)."""
    kind = spec.get("type")
    if kind == "parquet":
        paths = spec.get("paths", spec.get("path"))
        if not paths:
            raise InvalidInputError("source.paths: expected a path or a list of paths", field="source.paths")
        return ParquetSource(paths, base_dir=base_dir)
    if kind == "table":
        schema = spec.get("schema")
        if not isinstance(schema, Mapping):
            raise InvalidInputError("source.schema: expected a mapping of column -> type", field="source.schema")
        return TableSource(None, schema=schema)
    if kind == "sql":
        inputs = spec.get("inputs") or {}
        if not isinstance(inputs, Mapping):
            raise InvalidInputError("source.inputs: expected a mapping of name -> source", field="source.inputs")
        return SqlSource(
            str(spec.get("query", "")),
            {str(name): source_from_spec(sub, base_dir=base_dir) for name, sub in inputs.items()},
        )
    raise InvalidInputError(f"source.type: expected 'parquet', 'table' or 'sql', got {kind!r}", field="source.type")
