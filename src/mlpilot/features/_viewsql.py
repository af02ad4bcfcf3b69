"""SQL for a feature view's rows in a normalized shape, shared by the training-set join and materialization.

Every time becomes microseconds since the epoch (UTC) so all comparisons are integer comparisons:

- ``__mlpilot_et``: event time;
- ``__mlpilot_av``: availability time (the event time when the view has none; ``NEVER`` when null, i.e. the
  row never became available);
- ``__mlpilot_e``: ``greatest(et, av)``, the earliest time at which the row may be used;
- ``__mlpilot_sf``, ``__mlpilot_sr``: the row's position in the source (file, row), the last tie-break.

Joins and "latest row" searches run on *index* rows (keys, times, position: a few integers per row) and fetch
the feature values afterwards, by position or by (keys, event time), with a hash join: sorting narrow rows is
much cheaper than sorting whole feature rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from mlpilot.errors import InvalidInputError
from mlpilot.features._duckdb import DuckSession, quote
from mlpilot.features.definitions import FeatureView
from mlpilot.features.dtypes import duckdb_type, timestamp_us_sql
from mlpilot.features.sources import SF, SR
from mlpilot.features.validate import raise_problems, source_problems, unreadable_source

__all__ = ["AV", "ET", "NEVER", "SF", "SR", "E", "PreparedView", "prepare_view"]

ET = "__mlpilot_et"
AV = "__mlpilot_av"
E = "__mlpilot_e"
NEVER = 9223372036854775807  # an availability time no as-of time reaches

_temp_names = itertools.count()


@dataclass
class PreparedView:
    """A view whose source schema was read and checked in one session."""

    view: FeatureView
    schema: dict[str, str]
    session: DuckSession
    _positional: str | None = field(default=None, repr=False)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.view.join_keys

    @property
    def bitemporal(self) -> bool:
        return self.view.available_at_field is not None

    def positional(self) -> str:
        """A ``FROM`` clause of the source with stable position columns (materialized once if need be)."""
        if self._positional is None:
            positional = self.view.source.positional_sql(self.session, list(self.schema))
            if positional is None:
                # Sources without stable positions (SQL queries) are evaluated once into a temporary table,
                # which DuckDB keeps within memory_limit and spills as needed.
                name = f"__mlpilot_m{next(_temp_names)}"
                self.session.execute(
                    f"CREATE TEMP TABLE {name} AS SELECT *, CAST(0 AS BIGINT) AS {SF}, "
                    f"CAST(row_number() OVER () AS BIGINT) AS {SR} FROM {self.view.source.from_sql(self.session)}"
                )
                positional = name
            self._positional = positional
        return self._positional

    def _times(self) -> list[str]:
        view = self.view
        et = timestamp_us_sql(quote(view.timestamp_field), self.schema[view.timestamp_field])
        if view.available_at_field is None:
            return [f"{et} AS {ET}", f"{et} AS {AV}", f"{et} AS {E}"]
        av = timestamp_us_sql(quote(view.available_at_field), self.schema[view.available_at_field])
        av = f"coalesce({av}, {NEVER})"
        return [f"{et} AS {ET}", f"{av} AS {AV}", f"greatest({et}, {av}) AS {E}"]

    def index_sql(self, *, positional: bool, times: bool = True) -> str:
        """Narrow rows: join keys, (with ``times``) the three times, and (with ``positional``) the position."""
        parts = [quote(k) for k in self.keys]
        parts += self._times() if times else self._times()[:1]
        if positional:
            parts += [SF, SR]
        source = self.positional() if positional else self.view.source.from_sql(self.session)
        return f"SELECT {', '.join(parts)} FROM {source} WHERE {self._not_null()}"

    def features_sql(self, columns: Sequence[tuple[str, str]], *, by_position: bool) -> str:
        """Feature values (cast to their declared types, aliased per ``columns``) with the columns to fetch them
        by: the position, or the join keys and event time."""
        if by_position:
            parts = [SF, SR]
            source = self.positional()
        else:
            et = timestamp_us_sql(quote(self.view.timestamp_field), self.schema[self.view.timestamp_field])
            parts = [quote(k) for k in self.keys] + [f"{et} AS {ET}"]
            source = self.view.source.from_sql(self.session)
        for name, alias in columns:
            parts.append(f"CAST({quote(name)} AS {duckdb_type(self.view.feature(name).dtype)}) AS {quote(alias)}")
        return f"SELECT {', '.join(parts)} FROM {source} WHERE {self._not_null()}"

    def _not_null(self) -> str:
        return f"{quote(self.view.timestamp_field)} IS NOT NULL"


def prepare_view(view: FeatureView, session: DuckSession) -> PreparedView:
    """Read ``view``'s source schema and refuse the view if its columns do not match its declaration."""
    try:
        schema = view.source.schema(session)
    except InvalidInputError as exc:
        problem = unreadable_source(view, exc)
        raise InvalidInputError(problem.message, field=problem.field) from exc
    raise_problems(source_problems(view, schema))
    return PreparedView(view, schema, session)
