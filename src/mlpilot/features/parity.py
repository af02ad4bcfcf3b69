"""Training/serving skew as a number: replay logged online lookups through the offline join and compare.

    >>> report = parity("logs/lookups", definitions=load_definitions("features.py"))  # doctest: +SKIP
    >>> report.mismatches, report.by_feature                                            # doctest: +SKIP
    (0, {'tenure_months': 0, 'plan': 0})

Each logged row says: at time ``t``, for these entity keys, serving used these feature values. The offline
join (:func:`~mlpilot.features.get_training_set`) is asked the same question, as of ``t``, and every value
that differs is a mismatch: a stale or partial materialization, a value pushed online but missing from the
offline log, a changed transformation, a corrupted online store. With current materialization and the same
data on both sides the answer is zero, because online reads and the offline join apply the same rules (latest
row usable by ``t``, the same TTL).

Two logs can be replayed:

- the **lookup log** written by :class:`~mlpilot.features.serving.FeatureLookup` (it names its join keys and,
  per column, the view and feature it came from, so no ``features`` argument is needed);
- the model server's **prediction log** (``serving/predlog.py`` layout): pass the ``features`` the endpoint
  looks up; keys are read from ``inputs.<key>`` or, for a single join key, from ``entity_id``; the time is
  the request's arrival (milliseconds), which is what the serving hook passes as the lookup time. A NaN in
  the log matches a null offline value (NumPy inputs cannot hold nulls).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features._remote import is_remote, remote_filesystem
from mlpilot.features.catalog import Definitions, FeaturesArg, resolve_features
from mlpilot.features.lookup_log import LOOKUP_METADATA_KEY
from mlpilot.features.sources import ParquetSource
from mlpilot.features.training import Engine, get_training_set

__all__ = ["Mismatch", "ParityReport", "parity"]

_TIME = "_parity_time"


@dataclass(frozen=True)
class Mismatch:
    """One feature value that serving used and the offline join disagrees with."""

    request_id: str | None
    row: int | None
    time: datetime
    keys: dict[str, Any]
    feature: str
    online: Any
    offline: Any


@dataclass(frozen=True)
class ParityReport:
    """Mismatches between logged online values and the offline join, in total, per feature, and examples."""

    rows: int
    skipped: int
    features: tuple[str, ...]
    compared: int
    mismatches: int
    by_feature: dict[str, int] = field(default_factory=dict)
    examples: tuple[Mismatch, ...] = ()

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["mismatch_rate"] = self.mismatch_rate
        doc["examples"] = [{**asdict(m), "time": m.time.isoformat()} for m in self.examples]
        return doc

    def render(self) -> str:
        """A short human summary."""
        head = (
            f"{self.rows:,} logged rows, {self.compared:,} values compared: {self.mismatches:,} mismatches "
            f"({self.mismatch_rate:.2%})"
        )
        if self.skipped:
            head += f"; {self.skipped:,} rows skipped (no entity key)"
        lines = [head]
        lines += [f"  {name}: {count:,}" for name, count in self.by_feature.items() if count]
        return "\n".join(lines)


def parity(
    log: str | Path | Sequence[str | Path] | Any,
    features: FeaturesArg | None = None,
    *,
    definitions: Definitions | None = None,
    full_names: bool = False,
    model: str | None = None,
    tolerance: float = 0.0,
    max_examples: int = 100,
    engine: Engine = "auto",
    memory_limit: str | None = None,
) -> ParityReport:
    """Replay ``log`` (Parquet files: a folder, glob or list; or an Arrow table) through the offline join.

    ``features`` (a service, views, ``"view:feature"`` names) is required for a prediction log and optional
    for a lookup log. ``model`` keeps only that model's rows of a prediction log. Floats match within
    ``tolerance`` (relative and absolute; 0 = exactly, NaN matches NaN); nulls match nulls.
    """
    import pyarrow as pa

    if tolerance < 0:
        raise InvalidInputError("tolerance: expected a non-negative number", field="tolerance")
    if definitions is None and features is not None:
        definitions = Definitions(s.view for s in resolve_features(features))
    table = log if isinstance(log, pa.Table) else _read(log, model)
    # A prediction log holds what the model received: NumPy turned missing numbers into NaN.
    nan_is_null = "inputs" in table.column_names
    if nan_is_null:
        entity, logged, refs, skipped = _from_predictions(table, features, definitions, full_names, model)
    else:
        entity, logged, refs, skipped = _from_lookups(table, features, definitions)
    if entity.num_rows == 0:
        return ParityReport(0, skipped, tuple(logged), 0, 0, dict.fromkeys(logged, 0))
    offline = get_training_set(
        entity,
        refs,
        definitions=definitions,
        timestamp_field=_TIME,
        full_names=True,
        engine=engine,
        memory_limit=memory_limit,
    ).data
    return _compare(entity, logged, offline, tolerance, max_examples, skipped, nan_is_null)


def _partition(path: str, key: str) -> str | None:
    """The value of a Hive-style ``key=value`` folder in ``path``, if any."""
    for part in Path(path).parts:
        name, sep, value = part.partition("=")
        if sep and name == key:
            return value
    return None


def _read(log: str | Path | Sequence[str | Path], model: str | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [log] if isinstance(log, str | Path) else list(log)
    files = ParquetSource([str(p) for p in paths]).files()
    if model is not None:
        # A prediction log's folders name their model: other models' inputs need not even be read.
        files = [f for f in files if _partition(f, "model") in (None, model)]
        if not files:
            raise InvalidInputError(f"log: no prediction log files of model {model!r} there", field="log")
    tables = [_read_file(pq, f) for f in files]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        raise InvalidInputError(f"log: the log files do not share one schema: {exc}", field="log") from exc


def _read_file(pq: Any, path: str) -> Any:
    """One log file, local or on object storage (``s3://``, through the same filesystem as the sources)."""
    if is_remote(path):
        return pq.read_table(path.split("://", 1)[1], filesystem=remote_filesystem(path))
    return pq.read_table(path)


def _from_lookups(
    table: Any, features: FeaturesArg | None, definitions: Definitions | None
) -> tuple[Any, dict[str, tuple[Any, str]], list[str], int]:
    import pyarrow as pa

    raw = (table.schema.metadata or {}).get(LOOKUP_METADATA_KEY)
    if raw is None:
        raise InvalidInputError(
            "log: neither a lookup log (no mlpilot.lookup metadata) nor a prediction log (no inputs column)",
            field="log",
        )
    meta = json.loads(raw)
    columns = {f["column"]: (f["view"], f["feature"]) for f in meta["features"]}
    if features is not None:
        wanted = {(s.view.name, f) for s in resolve_features(features, definitions) for f in s.features}
        columns = {c: vf for c, vf in columns.items() if vf in wanted}
        if not columns:
            raise InvalidInputError("features: none of these features is in the lookup log", field="features")
    keys = list(meta["join_keys"])
    time = table.column("time").cast(pa.timestamp("us", tz="UTC"))
    entity = pa.table(
        {"request_id": table.column("request_id"), "row": table.column("row"), **{k: table.column(k) for k in keys}}
    ).append_column(_TIME, time)
    logged = {c: (table.column(c), f"{v}__{f}") for c, (v, f) in columns.items()}
    return entity, logged, [f"{v}:{f}" for v, f in columns.values()], 0


def _from_predictions(
    table: Any, features: FeaturesArg | None, definitions: Definitions | None, full_names: bool, model: str | None
) -> tuple[Any, dict[str, tuple[Any, str]], list[str], int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if features is None:
        raise InvalidInputError(
            "features: a prediction log does not say which inputs were looked up: pass the endpoint's features",
            field="features",
        )
    if model is not None:
        table = table.filter(pc.equal(table.column("model"), model))
    selections = resolve_features(features, definitions)
    inputs = table.column("inputs").combine_chunks()
    names = {inputs.type.field(i).name for i in range(inputs.type.num_fields)}
    keys: list[str] = []
    for s in selections:
        keys.extend(k for k in s.view.join_keys if k not in keys)
    key_columns: dict[str, Any] = {}
    for key in keys:
        if key in names:
            key_columns[key] = inputs.field(key)
        elif len(keys) == 1 and "entity_id" in table.column_names:
            key_columns[key] = _typed_entity_ids(table.column("entity_id"), selections[0].view)
        else:
            raise InvalidInputError(
                f"log: the prediction log has no input {key!r} and no single-key entity_id to read it from",
                field="log",
            )
    logged: dict[str, tuple[Any, str]] = {}
    refs: list[str] = []
    for s in selections:
        for feature in s.features:
            column = f"{s.view.name}__{feature}" if full_names else feature
            if column not in names:
                raise InvalidInputError(f"log: the prediction log has no input {column!r}", field="features")
            logged[column] = (inputs.field(column), f"{s.view.name}__{feature}")
            refs.append(f"{s.view.name}:{feature}")
    entity = pa.table(
        {
            "request_id": table.column("request_id"),
            "row": table.column("row"),
            **key_columns,
            _TIME: table.column("time").cast(pa.timestamp("us", tz="UTC")),
        }
    )
    present = None
    for key in keys:
        valid = entity.column(key).is_valid()
        present = valid if present is None else pc.and_(present, valid)
    skipped = 0
    if present is not None and entity.num_rows:
        skipped = entity.num_rows - int(pc.sum(present).as_py() or 0)
        if skipped:
            entity = entity.filter(present)
            logged = {name: (pc.filter(col, present), out) for name, (col, out) in logged.items()}
    return entity, logged, refs, skipped


def _typed_entity_ids(column: Any, view: Any) -> Any:
    """``entity_id`` strings as the view's key type (integers when the source's key is an integer)."""
    import pyarrow as pa

    schema = getattr(view.source, "table", None)
    key = view.join_keys[0]
    if schema is not None and key in schema.column_names:
        target = schema.schema.field(key).type
    else:
        try:
            import pyarrow.parquet as pq

            target = pq.read_schema(view.source.files()[0]).field(key).type
        except Exception:  # the key type is unknown here: the join checks it
            return column
    if pa.types.is_integer(target):
        try:
            return column.cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInputError(f"log: entity_id values are not integers: {exc}", field="log") from exc
    return column


def _same(online: Any, offline: Any, tolerance: float, nan_is_null: bool) -> bool:
    if nan_is_null:
        online = None if isinstance(online, float) and math.isnan(online) else online
    if online is None or offline is None:
        return online is None and offline is None
    if isinstance(online, float) or isinstance(offline, float):
        a, b = float(online), float(offline)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or (tolerance > 0 and math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance))
    return bool(online == offline)


def _compare(
    entity: Any,
    logged: dict[str, tuple[Any, str]],
    offline: Any,
    tolerance: float,
    max_examples: int,
    skipped: int,
    nan_is_null: bool,
) -> ParityReport:
    keys = [c for c in entity.column_names if c not in ("request_id", "row", _TIME)]
    by_feature: dict[str, int] = {}
    examples: list[Mismatch] = []
    rows = entity.num_rows
    for name, (column, output) in logged.items():
        online = column.to_pylist()
        expected = offline.column(output).to_pylist()
        bad = [i for i in range(rows) if not _same(online[i], expected[i], tolerance, nan_is_null)]
        by_feature[name] = len(bad)
        for i in bad[: max(0, max_examples - len(examples))]:
            examples.append(
                Mismatch(
                    entity.column("request_id")[i].as_py(),
                    entity.column("row")[i].as_py(),
                    entity.column(_TIME)[i].as_py(),
                    {k: entity.column(k)[i].as_py() for k in keys},
                    name,
                    online[i],
                    expected[i],
                )
            )
    total = sum(by_feature.values())
    return ParityReport(rows, skipped, tuple(logged), rows * len(logged), total, by_feature, tuple(examples))
