"""Serving-time feature lookup: a model endpoint's callers send entity keys (and request-time fields), the
server fills in the rest from the online store before predicting.

    >>> lookup = FeatureLookup.from_specs(specs, "churn", store=open_online_store(url),
    ...                                   log_url="logs/lookups")          # doctest: +SKIP
    >>> lookup.lookup([{"customer_id": 42, "channel": "web"}])             # doctest: +SKIP
    {'customer_id': [42], 'channel': ['web'], 'tenure_months': [14.0], 'plan': ['pro']}
    >>> columns = await lookup.alookup(rows, now_us=arrived_ms * 1000, request_id=rid)  # doctest: +SKIP

Everything that can be decided once is decided in the constructor (features resolved, payload decoders and
TTLs per view, output names and dtypes): a lookup is one online-store round trip per view and no ORM, DuckDB
or schema work. :meth:`FeatureLookup.alookup` runs the (blocking) store read in a worker thread for network
stores (Redis) and inline for the local SQLite store, whose reads take microseconds.

With a lookup log, each lookup's keys, time and values are recorded (off the request path) for
:func:`mlpilot.features.parity`, which replays them through the offline join.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features.catalog import Definitions, FeaturesArg
from mlpilot.features.lookup import OnlineReader
from mlpilot.features.lookup_log import LookupLog
from mlpilot.features.online.base import OnlineStore

__all__ = ["FeatureLookup"]

Rows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]


class FeatureLookup:
    """Fills model inputs from the online store for one feature service (or list of features).

    ``log_url`` (a folder, ``file://`` or ``s3://``) records every lookup in a :class:`LookupLog`;
    ``offload`` forces (or forbids) running store reads in a worker thread in :meth:`alookup`.
    """

    def __init__(
        self,
        features: FeaturesArg,
        *,
        store: OnlineStore,
        definitions: Definitions | None = None,
        full_names: bool = False,
        log_url: str | None = None,
        log_options: Mapping[str, Any] | None = None,
        offload: bool | None = None,
    ) -> None:
        from mlpilot.features.online.sqlite import SqliteOnlineStore

        self.reader = OnlineReader(
            features, store=store, definitions=definitions, full_names=full_names, field_prefix=""
        )
        self.join_keys = self.reader.join_keys
        #: output column -> declared dtype, in output order
        self.dtypes = dict(self.reader.dtypes)
        self.features = tuple(self.dtypes)
        self._feature_set = frozenset(self.features)
        self.offload = offload if offload is not None else not isinstance(store, SqliteOnlineStore)
        self.log: LookupLog | None = None
        if log_url is not None:
            self.log = LookupLog(
                log_url,
                join_keys=self.join_keys,
                sources=self.reader.sources,
                dtypes=self.dtypes,
                **(log_options or {}),
            ).start()

    @classmethod
    def from_specs(
        cls, specs: Iterable[Mapping[str, Any]], feature_service: str, *, store: OnlineStore, **options: Any
    ) -> FeatureLookup:
        """A lookup for ``feature_service`` as registered (``FeatureRegistryBackend.load_specs().specs``): what a
        model server builds at startup from the control plane, without the user's definition files."""
        definitions = Definitions.from_specs(specs)
        return cls(definitions.service(feature_service), store=store, definitions=definitions, **options)

    def lookup(self, rows: Rows, *, now_us: int | None = None, request_id: str | None = None) -> dict[str, list[Any]]:
        """Columns: every field the caller sent (in first-seen order; ``None`` where a row lacks one), then each
        feature as read online at ``now_us`` (µs since the epoch; default now). Refuses a request that sends a
        feature's value itself, so served inputs can never silently differ from the feature store's."""
        columns, count = self._columns(rows)
        sent = self._feature_set.intersection(columns)
        if sent:
            name = sorted(sent)[0]
            raise InvalidInputError(
                f"{name}: this feature is looked up from the feature store; send only entity keys "
                f"({', '.join(self.join_keys)}) and request-time fields",
                field=name,
            )
        for key in self.join_keys:
            if key not in columns:
                raise InvalidInputError(
                    f"{key}: missing entity key (this endpoint looks features up by {', '.join(self.join_keys)})",
                    field=key,
                )
        keys = {k: columns[k] for k in self.join_keys}
        now = time.time_ns() // 1000 if now_us is None else now_us
        found = self.reader.read_columns(keys, now)
        for name in self.features:
            columns[name] = found[name]
        if self.log is not None:
            self.log.record(request_id or os.urandom(16).hex(), now, columns, count)
        return columns

    async def alookup(
        self, rows: Rows, *, now_us: int | None = None, request_id: str | None = None
    ) -> dict[str, list[Any]]:
        """:meth:`lookup` for an event loop."""
        if self.offload:
            return await asyncio.to_thread(self.lookup, rows, now_us=now_us, request_id=request_id)
        return self.lookup(rows, now_us=now_us, request_id=request_id)

    def _columns(self, rows: Rows) -> tuple[dict[str, list[Any]], int]:
        if isinstance(rows, Mapping):
            columns = {str(name): list(values) for name, values in rows.items()}
            lengths = {len(values) for values in columns.values()}
            if len(lengths) > 1:
                raise InvalidInputError("inputs: columns differ in length", field="inputs")
            return columns, lengths.pop() if lengths else 0
        if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
            raise InvalidInputError("instances: expected a list of rows or a mapping of columns", field="instances")
        names: dict[str, None] = {}
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidInputError(
                    f"instances[{i}]: expected an object of entity keys and request-time fields",
                    field=f"instances[{i}]",
                )
            names.update(dict.fromkeys(row))
        columns = {name: [row.get(name) for row in rows] for name in names}
        return columns, len(rows)

    def close(self) -> None:
        """Flush and stop the lookup log (the online store belongs to the caller)."""
        if self.log is not None:
            self.log.close()
