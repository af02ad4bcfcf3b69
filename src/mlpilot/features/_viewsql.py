"""SQL for a feature view's rows in a normalized shape, shared by the training-set join and materialization.

Every time becomes microseconds since the epoch (UTC) so all comparisons are integer comparisons:

- ``__mlpilot_et``: event time;
- ``__mlpilot_av``: availability time (the event time when the view has none; ``NEVER`` when null, i.e. the
  row never became available);
- ``__mlpilot_e``: ``greatest(et, av)``, the earliest time at which the row may be used;
- ``__mlpilot_seq``: source order, the last tie-break.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlpilot.features._duckdb import DuckSession, quote
from mlpilot.features.definitions import FeatureView
from mlpilot.features.dtypes import duckdb_type, timestamp_us_sql
from mlpilot.features.sources import SEQ_COLUMN
from mlpilot.features.validate import raise_problems, source_problems

__all__ = ["AV", "ET", "NEVER", "SEQ", "E", "PreparedView", "prepare_view"]

ET = "__mlpilot_et"
AV = "__mlpilot_av"
E = "__mlpilot_e"
SEQ = SEQ_COLUMN
NEVER = 9223372036854775807  # an availability time no as-of time reaches


@dataclass(frozen=True)
class PreparedView:
    """A view whose source schema was read and checked in one session."""

    view: FeatureView
    schema: dict[str, str]
    session: DuckSession

    @property
    def keys(self) -> tuple[str, ...]:
        return self.view.join_keys

    @property
    def bitemporal(self) -> bool:
        return self.view.available_at_field is not None

    def rows_sql(
        self,
        columns: Sequence[tuple[str, str]],
        *,
        with_seq: bool = False,
    ) -> str:
        """``SELECT`` of the view's normalized rows.

        ``columns`` pairs each feature with its output alias; features are cast to their declared type.
        """
        view = self.view
        et = timestamp_us_sql(quote(view.timestamp_field), self.schema[view.timestamp_field])
        parts = [quote(k) for k in self.keys]
        parts.append(f"{et} AS {ET}")
        if view.available_at_field is not None:
            av = timestamp_us_sql(quote(view.available_at_field), self.schema[view.available_at_field])
            parts.append(f"coalesce({av}, {NEVER}) AS {AV}")
            parts.append(f"greatest({et}, coalesce({av}, {NEVER})) AS {E}")
        else:
            parts.append(f"{et} AS {AV}")
            parts.append(f"{et} AS {E}")
        for name, alias in columns:
            dtype = duckdb_type(view.feature(name).dtype)
            parts.append(f"CAST({quote(name)} AS {dtype}) AS {quote(alias)}")
        if with_seq:
            parts.append(SEQ)
        source = view.source.from_sql(self.session, with_seq=with_seq)
        return f"SELECT {', '.join(parts)} FROM {source} WHERE {quote(view.timestamp_field)} IS NOT NULL"

    def has_duplicates(self) -> bool:
        """Whether two rows share join keys, event time and availability time (then source order decides)."""
        keys = ", ".join(quote(k) for k in self.keys)
        query = f"SELECT 1 FROM ({self.rows_sql([])}) GROUP BY {keys}, {ET}, {AV} HAVING count(*) > 1 LIMIT 1"
        return bool(self.session.fetchall(query))


def prepare_view(view: FeatureView, session: DuckSession) -> PreparedView:
    """Read ``view``'s source schema and refuse the view if its columns do not match its declaration."""
    schema = view.source.schema(session)
    raise_problems(source_problems(view, schema))
    return PreparedView(view, schema, session)
