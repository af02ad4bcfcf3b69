"""Point-in-time-correct training sets: for each entity row, each view's latest row known at that time.

    >>> ts = get_training_set(entity_df, [txn_stats, "profile:age"], definitions=defs)  # doctest: +SKIP
    >>> ts.data            # a pyarrow.Table (output="pandas" / "polars" on request)  # doctest: +SKIP
    >>> ts.report.excluded_by_availability  # doctest: +SKIP

Semantics, for an entity row with time ``t`` and as-of time ``T = t - embargo``, and each view:

1. candidates are the view's rows with the same join keys, ``event_time <= T`` and, when the view has an
   ``available_at_field``, ``available_at <= T`` (both ``<`` with ``strict=True``); rows with a null
   availability time never qualify;
2. the winner is the candidate with the greatest ``(event_time, available_at)``, then the later row in the
source;
3. if the view has a TTL and the winner's ``event_time < T - ttl``, the features are null.

The bitemporal case is not a plain ASOF join: the row with the latest event time may not be available yet
while an older one is. Each view's rows are therefore reduced to their *records*: ordered by ``e =
max(event_time, available_at)`` (the first time a row may be used), a row is kept only if it beats every row
usable before it. The latest record with ``e <= T`` is then exactly the winner: one ASOF join on ``e``.

Two engines implement this and return identical results: NumPy over in-memory arrays
(:mod:`~mlpilot.features._memengine`: a ``searchsorted`` over ``(key, time)`` composites, for inputs that fit in
memory) and DuckDB (:mod:`~mlpilot.features._duckjoin`: one SQL query with ASOF joins, out of core).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from mlpilot.errors import InvalidInputError
from mlpilot.features._duckdb import resolve_memory_limit
from mlpilot.features._frames import Output, from_arrow
from mlpilot.features.catalog import Definitions, FeaturesArg, resolve_features
from mlpilot.features.leakage import REPORT_METADATA_KEY, LeakageReport, ViewLeakage

__all__ = ["Engine", "TrainingSet", "get_training_set"]

Engine = Literal["auto", "memory", "duckdb"]


@dataclass(frozen=True)
class TrainingSet:
    """The joined rows (Arrow, pandas or polars) and the :class:`LeakageReport` of the join.

    The report is also stored in the Arrow schema metadata (``LeakageReport.from_arrow``) and, for pandas, in
    ``data.attrs["mlpilot.leakage_report"]``: ``run.log_dataset(ts.data, name=...)`` stores it with the run.
    polars frames carry no metadata: log the training set itself (``run.log_dataset(ts, name=...)``).
    """

    data: Any
    report: LeakageReport


def get_training_set(
    entity_df: Any,
    features: FeaturesArg,
    *,
    definitions: Definitions | None = None,
    timestamp_field: str = "event_timestamp",
    strict: bool = False,
    embargo: timedelta | None = None,
    full_names: bool = False,
    output: Output = "arrow",
    engine: Engine = "auto",
    memory_limit: str | None = None,
    temp_directory: str | Path | None = None,
    threads: int | None = None,
) -> TrainingSet:
    """Join each row of ``entity_df`` with the features it could have known at its ``timestamp_field``.

    ``entity_df`` is an Arrow table, a pandas or polars DataFrame, or a path/glob of Parquet files. It must
    hold every requested view's join keys and ``timestamp_field``; its columns come first in the result, in
    the original row order, followed by the features (``view__feature`` with ``full_names=True``).

    ``strict=True`` uses ``<`` instead of ``<=``; ``embargo`` moves every as-of time back by that gap.

    ``engine="auto"`` joins in memory with NumPy when the inputs are in-memory tables or local Parquet files
    whose index columns fit in half of ``memory_limit``, and otherwise with DuckDB, out of core within
    ``memory_limit`` (spilling to ``temp_directory``, using ``threads``); both default to the settings
    ``MLPILOT_FEATURES_MEMORY_LIMIT`` (2GB) and ``MLPILOT_FEATURES_TEMP_DIRECTORY``. Both engines return the same
    values, types and report; ``"memory"`` and ``"duckdb"`` force one.

    >>> ts = get_training_set(labels, [txn_stats], output="pandas")  # doctest: +SKIP
    >>> ts.report.ttl_expired                                         # doctest: +SKIP
    """
    if engine not in ("auto", "memory", "duckdb"):
        raise InvalidInputError(f"engine: expected 'auto', 'memory' or 'duckdb', got {engine!r}", field="engine")
    if output not in ("arrow", "pandas", "polars"):
        raise InvalidInputError(f"output: expected 'arrow', 'pandas' or 'polars', got {output!r}", field="output")
    selections = resolve_features(features, definitions)
    if embargo is not None and embargo < timedelta(0):
        raise InvalidInputError("embargo: expected a non-negative timedelta", field="embargo")
    embargo_us = 0 if embargo is None else embargo // timedelta(microseconds=1)
    joined: tuple[Any, dict[str, ViewLeakage]] | None = None
    if engine != "duckdb":
        from mlpilot.features._memengine import memory_budget, memory_join
        from mlpilot.features._memsource import Unsupported

        memory_limit = resolve_memory_limit(memory_limit)
        budget = memory_budget(memory_limit)
        try:
            if budget is None:
                raise Unsupported(f"memory_limit {memory_limit!r} is not a size such as 2GB")
            joined = memory_join(
                entity_df,
                selections,
                timestamp_field=timestamp_field,
                strict=strict,
                embargo_us=embargo_us,
                full_names=full_names,
                budget=budget,
            )
        except Unsupported as exc:
            if engine == "memory":
                raise InvalidInputError(f"engine='memory' cannot join these inputs: {exc}", field="engine") from exc
    if joined is None:
        from mlpilot.features._duckjoin import duckdb_join

        joined = duckdb_join(
            entity_df,
            selections,
            full_names=full_names,
            memory_limit=memory_limit,
            temp_directory=temp_directory,
            threads=threads,
            timestamp_field=timestamp_field,
            strict=strict,
            embargo_us=embargo_us,
        )
    table, counts = joined
    report = LeakageReport(table.num_rows, counts, strict=strict, embargo_seconds=embargo_us / 1e6)
    metadata = dict(table.schema.metadata or {})
    metadata[REPORT_METADATA_KEY] = report.to_json().encode()
    table = table.replace_schema_metadata(metadata)
    data = from_arrow(table, output)
    if output == "pandas":
        data.attrs[REPORT_METADATA_KEY.decode()] = report.to_dict()
    return TrainingSet(data, report)
