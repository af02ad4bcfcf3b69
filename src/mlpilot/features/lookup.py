"""Online lookup: the latest features of some entities, with the views' TTL applied as in training sets.

    >>> get_online_features([{"customer_id": 42}], ["txn_stats:amount_7d"], store=store, definitions=defs)
    ... # doctest: +SKIP
    {'customer_id': [42], 'amount_7d': [12.5]}

A stored row older than its view's TTL at ``now`` (``event_time < now - ttl``) reads as ``None``: the same
rule the training-set join applies at ``T = now``. For a hot path, build an :class:`OnlineReader` once and
call :meth:`OnlineReader.read` per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlpilot.errors import InvalidInputError
from mlpilot.features._codec import PayloadCodec, decode_value, encode_key, store_of, to_us
from mlpilot.features.catalog import Definitions, FeaturesArg, resolve_features
from mlpilot.features.online.base import OnlineStore, PayloadReader

__all__ = ["OnlineReader", "get_online_features"]

EntityRows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class _ViewPlan:
    name: str
    keys: tuple[str, ...]
    key_fields: tuple[str, ...]  # how errors name each key: entity_rows.<key>
    outputs: tuple[str, ...]
    positions: tuple[int, ...]  # of the selected features in the view's payload
    dtypes: tuple[str, ...]
    ttl_us: int | None
    codec: PayloadCodec
    plain: bool  # no timestamp/date feature: values are returned as stored


class OnlineReader:
    """Resolves features once; :meth:`read` then does one store round trip per view and decodes each view's
    payloads in bulk (:meth:`~mlpilot.features._codec.PayloadCodec.decode_columns`).

    >>> reader = OnlineReader(["txn_stats:amount_7d"], store=store, definitions=defs)  # doctest: +SKIP
    >>> reader.read([{"customer_id": 42}, {"customer_id": 7}])                        # doctest: +SKIP
    """

    def __init__(
        self,
        features: FeaturesArg,
        *,
        store: OnlineStore,
        definitions: Definitions | None = None,
        full_names: bool = False,
        field_prefix: str = "entity_rows.",
    ) -> None:
        self.store = store
        # Stores with the optional fast path apply the TTL themselves and hand back payloads only.
        self._payload_reader = store if isinstance(store, PayloadReader) else None
        self.full_names = full_names
        plans: list[_ViewPlan] = []
        taken: set[str] = set()
        keys: list[str] = []
        #: output column -> (feature view, feature) it is read from
        self.sources: dict[str, tuple[str, str]] = {}
        for s in resolve_features(features, definitions):
            outputs = tuple(f"{s.view.name}__{f}" if full_names else f for f in s.features)
            self.sources.update({out: (s.view.name, f) for out, f in zip(outputs, s.features, strict=True)})
            for name in outputs:
                if name in taken:
                    raise InvalidInputError(
                        f"features: output name {name!r} is used twice; pass full_names=True",
                        field="features",
                    )
                taken.add(name)
            dtypes = tuple(s.view.feature(f).dtype for f in s.features)
            codec = PayloadCodec(s.view)
            plans.append(
                _ViewPlan(
                    s.view.name,
                    s.view.join_keys,
                    tuple(f"{field_prefix}{k}" for k in s.view.join_keys),
                    outputs,
                    tuple(codec.names.index(f) for f in s.features),
                    dtypes,
                    s.view.ttl_us,
                    codec,
                    not any(d in ("timestamp", "date") for d in dtypes),
                )
            )
            keys.extend(k for k in s.view.join_keys if k not in keys)
        clash = taken.intersection(keys)
        if clash:
            raise InvalidInputError(
                f"features: output name {sorted(clash)[0]!r} is also a join key; pass full_names=True",
                field="features",
            )
        self._plans = tuple(plans)
        self.join_keys = tuple(keys)
        #: output column -> declared dtype of each feature, in output order
        self.dtypes: dict[str, str] = {
            name: dtype for plan in self._plans for name, dtype in zip(plan.outputs, plan.dtypes, strict=True)
        }

    def read(self, entity_rows: EntityRows, *, now: datetime | None = None) -> dict[str, list[Any]]:
        """Columns: the join keys as given, then each feature (``None`` if missing or older than the TTL)."""
        columns = self.key_columns(entity_rows)
        now_us = time.time_ns() // 1000 if now is None else to_us(now, "now")
        return self.read_columns(columns, now_us)

    def read_columns(self, columns: dict[str, list[Any]], now_us: int) -> dict[str, list[Any]]:
        """:meth:`read` for join-key ``columns`` (lists of equal length) at ``now_us`` (µs since the epoch)."""
        count = len(columns[self.join_keys[0]]) if self.join_keys else 0
        result: dict[str, list[Any]] = dict(columns)
        for plan in self._plans:
            cutoff = None if plan.ttl_us is None else now_us - plan.ttl_us
            payloads = self._payloads(plan, self._entity_keys(plan, columns, count), cutoff)
            outs = plan.codec.decode_columns(payloads, plan.positions)
            for name, dtype, values in zip(plan.outputs, plan.dtypes, outs, strict=True):
                if not plan.plain and dtype in ("timestamp", "date"):
                    values = [decode_value(v, dtype) for v in values]
                result[name] = values
        return result

    def _payloads(self, plan: _ViewPlan, entity_keys: list[str], cutoff: int | None) -> list[bytes | None]:
        if self._payload_reader is not None:
            return self._payload_reader.read_payloads(plan.name, entity_keys, min_event_time=cutoff)
        # A store with only the basic contract: the same TTL rule, applied here.
        return [
            None if row is None or (cutoff is not None and row.event_time < cutoff) else row.payload
            for row in self.store.read(plan.name, entity_keys)
        ]

    @staticmethod
    def _entity_keys(plan: _ViewPlan, columns: dict[str, list[Any]], count: int) -> list[str]:
        if len(plan.keys) == 1:
            values = columns[plan.keys[0]]
            if set(map(type, values)) == {int}:  # the common case: what encode_key makes of one int, in bulk
                return [f"[{value}]" for value in values]
            return [encode_key((value,), plan.key_fields) for value in values]
        key_values = [columns[k] for k in plan.keys]
        return [encode_key([col[i] for col in key_values], plan.key_fields) for i in range(count)]

    def key_columns(self, entity_rows: EntityRows) -> dict[str, list[Any]]:
        """The join-key columns of row dicts or a dict of columns, checked (missing keys name the field)."""
        if isinstance(entity_rows, Mapping):
            columns = {}
            for key in self.join_keys:
                if key not in entity_rows:
                    raise InvalidInputError(f"entity_rows: missing join key {key!r}", field=f"entity_rows.{key}")
                values = entity_rows[key]
                if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
                    raise InvalidInputError(
                        f"entity_rows.{key}: expected a list of values, got {type(values).__name__}",
                        field=f"entity_rows.{key}",
                    )
                columns[key] = list(values)
            lengths = {len(c) for c in columns.values()}
            if len(lengths) > 1:
                raise InvalidInputError("entity_rows: join-key columns differ in length", field="entity_rows")
            return columns
        columns = {key: [] for key in self.join_keys}
        if isinstance(entity_rows, str | bytes) or not isinstance(entity_rows, Iterable):
            raise InvalidInputError(
                "entity_rows: expected a list of row mappings or a mapping of columns", field="entity_rows"
            )
        for i, row in enumerate(entity_rows):
            if not isinstance(row, Mapping):
                raise InvalidInputError(
                    f"entity_rows[{i}]: expected a mapping of join keys, got {type(row).__name__}",
                    field=f"entity_rows[{i}]",
                )
            for key in self.join_keys:
                try:
                    columns[key].append(row[key])
                except KeyError:
                    raise InvalidInputError(
                        f"entity_rows[{i}]: missing join key {key!r}", field=f"entity_rows.{key}"
                    ) from None
        return columns


def get_online_features(
    entity_rows: EntityRows,
    features: FeaturesArg,
    *,
    store: OnlineStore | str | None = None,
    definitions: Definitions | None = None,
    now: datetime | None = None,
    full_names: bool = False,
) -> dict[str, list[Any]]:
    """Latest features of ``entity_rows`` (row dicts or a dict of columns) from ``store`` (an ``OnlineStore``,
    a URL, or the default store)."""
    online, opened = store_of(store)
    try:
        reader = OnlineReader(features, store=online, definitions=definitions, full_names=full_names)
        return reader.read(entity_rows, now=now)
    finally:
        if opened:
            online.close()
