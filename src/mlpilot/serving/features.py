"""Serving-time features: model endpoints whose callers send entity keys, and the server looks the rest up.

A model served with a feature service (``features = { service = "churn" }`` under its ``[[serve.models]]``,
see :class:`~mlpilot.serving.config.FeaturesConfig`) takes requests such as::

    POST /v1/models/churn:predict
    {"instances": [{"customer_id": 42, "channel": "web"}]}

For each JSON request (OIP v2 JSON tensors, ``/v1`` rows or columns, ``/invocations``) the server

1. checks that every row has the service's entity keys and every input the model takes that the service does
   not provide (a *request-time* field), and that no row sends a looked-up feature itself: each is a 400
   naming the row and field (``instances[3].customer_id``);
2. reads the service's features from the online store as of the request's arrival, with
   :meth:`~mlpilot.features.FeatureLookup.alookup` (one round trip per view; network stores in a worker
   thread, so the event loop never waits on Redis);
3. hands the model its signature's inputs by name (entity keys it does not take are dropped);
4. logs the entity keys and every model input, looked-up values included, with ``entity_id`` set from a
   single join key, so that ``mlpilot features parity`` replays the prediction log through the offline join.

Where the online store has no value (an unknown entity, or a value older than its view's TTL) the model gets
a null (NaN for float inputs); if it cannot predict with it, the answer is a 422 naming the row and feature.
Binary tensors and CSV are refused with a 400: entity keys travel as JSON.

Definitions come from a :data:`FeatureSpecs` provider, called at start-up and when the serving config changes,
never on a request. When a :data:`FeatureVersion` provider is given too, the server's refresh loop asks it for
the registered definitions version of each project in use (a small read: no definitions) and, when a new
``mlpilot features apply`` landed, builds the affected lookups from the new definitions next to the old ones
and swaps them in with one assignment: a request holds either the old lookup or the new one, never fails for
the swap. :class:`~mlpilot.serving.RegistrySource` is both when given the feature registry::

    >>> source = RegistrySource(client.registry, client.artifacts, features=client.features)  # doctest: +SKIP
    >>> ModelServer(config, source).load().run()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpilot.errors import ConfigError, InvalidInputError, MlpilotError
from mlpilot.serving import oip, payloads
from mlpilot.serving.errors import MissingFeaturesError, input_error
from mlpilot.serving.model import ServedModel
from mlpilot.serving.schema import Columns

if TYPE_CHECKING:
    from mlpilot.features.online.base import OnlineStore
    from mlpilot.features.serving import FeatureLookup
    from mlpilot.serving.config import FeaturesConfig, ModelConfig, ServeConfig
    from mlpilot.serving.metrics import ServingMetrics
    from mlpilot.serving.repository import ModelRepository

__all__ = [
    "FeatureEndpoint",
    "FeatureRequest",
    "FeatureSpecs",
    "FeatureVersion",
    "LookedUp",
    "ServingFeatures",
    "parse_request",
]

logger = logging.getLogger("mlpilot.serving")

#: Returns the registered feature definitions (specs, as ``load_specs().specs``) of a registry project.
FeatureSpecs = Callable[[str], Sequence[Mapping[str, Any]]]
#: Returns the version of the feature definitions registered in a project (0: none yet), cheaply.
FeatureVersion = Callable[[str], int]

_ABSENT = object()
_EXAMPLES = 5


def _is_key(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@dataclass
class FeatureRequest:
    """A JSON request to a feature-service endpoint: parsed, not yet looked up.

    ``rows`` (objects) or ``columns`` (lists) hold what the caller sent; ``where`` is how errors name them.
    """

    protocol: str
    where: str
    rows: list[Mapping[str, Any]] | None
    columns: dict[str, list[Any]] | None
    count: int
    wanted: frozenset[str]
    entity_id: str | list[str] | None = None
    segments: dict[str, str] = field(default_factory=dict)
    #: ``/v1``: the outputs the caller named
    requested: tuple[str, ...] = ()
    #: OIP: the outputs asked for, each with whether it goes back as binary
    oip_outputs: list[tuple[str, bool]] = field(default_factory=list)
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def locate(self, row: int, name: str) -> str:
        """``instances[3].customer_id`` for rows, ``inputs.customer_id[3]`` for columns."""
        return f"{self.where}[{row}].{name}" if self.rows is not None else f"{self.where}.{name}[{row}]"

    @property
    def data(self) -> Any:
        return self.rows if self.rows is not None else self.columns


def _table(value: Any, where: str) -> tuple[list[Mapping[str, Any]] | None, dict[str, list[Any]] | None, int]:
    """Rows (a list of objects) or columns (an object of lists), checked to be non-empty and rectangular."""
    if isinstance(value, Mapping):
        columns: dict[str, list[Any]] = {}
        for name, values in value.items():
            if not isinstance(values, list):
                raise InvalidInputError(
                    f"{where}.{name}: expected a list of values, one per row", field=f"{where}.{name}"
                )
            columns[str(name)] = values
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidInputError(f"{where}: columns differ in length: {lengths}", field=where)
        count = next(iter(lengths.values()), 0)
        if count == 0:
            raise InvalidInputError(f"{where}: the request has no rows: expected at least one", field=where)
        return None, columns, count
    if not isinstance(value, list) or not value:
        raise InvalidInputError(
            f"{where}: expected a non-empty list of objects (entity keys and request-time fields)", field=where
        )
    for i, row in enumerate(value):
        if not isinstance(row, Mapping):
            raise InvalidInputError(
                f"{where}[{i}]: expected an object of entity keys and request-time fields, got {_kind(row)} "
                "(this endpoint looks its features up: rows are named, not positional)",
                field=f"{where}[{i}]",
            )
    return value, None, len(value)


def parse_request(
    protocol: str, body: bytes, header_length: int | None, content_type: bytes, model: ServedModel
) -> FeatureRequest:
    """Parse a request to a feature-service endpoint (``protocol``: ``v2``, ``v1`` or ``invocations``)."""
    if protocol == "v2":
        return _parse_oip(body, header_length, model)
    if content_type.startswith(b"text/csv"):
        raise InvalidInputError(
            "body: text/csv is not accepted by an endpoint that looks its features up: send JSON rows of entity "
            "keys and request-time fields",
            field="body",
        )
    doc = payloads.load_json(body)
    if protocol == "v1":
        payloads.check_v1_fields(doc)
        where = "instances" if "instances" in doc else "inputs"
        if where not in doc:
            raise InvalidInputError("body: expected 'instances' (rows) or 'inputs' (columns)", field="instances")
        rows, columns, count = _table(doc[where], where)
        wanted, requested = payloads.v1_outputs(doc, model)
        entity, segments = payloads.parse_meta(doc, count)
        return FeatureRequest(protocol, where, rows, columns, count, wanted, entity, segments, requested)
    key = payloads.invocations_format(doc)
    if key == "dataframe_split":
        where = "dataframe_split.data"
        rows = _split_rows(doc[key])
        columns, count = None, len(rows)
    else:
        where = key
        rows, columns, count = _table(doc[key], key)
    entity, segments = payloads.invocations_params(doc, count)
    return FeatureRequest(protocol, where, rows, columns, count, frozenset(model.predict_outputs), entity, segments)


def _split_rows(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list) or "data" not in value:
        raise InvalidInputError(
            "dataframe_split: expected an object with 'columns' (the names of the entity keys and request-time "
            "fields) and 'data'",
            field="dataframe_split",
        )
    names = value["columns"]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise InvalidInputError("dataframe_split.columns: expected distinct names", field="dataframe_split.columns")
    data = value["data"]
    if not isinstance(data, list) or not data:
        raise InvalidInputError("dataframe_split.data: expected a non-empty list of rows", field="dataframe_split.data")
    rows: list[Mapping[str, Any]] = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(names):
            raise InvalidInputError(
                f"dataframe_split.data[{i}]: expected {len(names)} values ({', '.join(names)})",
                field=f"dataframe_split.data[{i}]",
            )
        rows.append(dict(zip(names, row, strict=True)))
    return rows


def _parse_oip(body: bytes, header_length: int | None, model: ServedModel) -> FeatureRequest:
    doc, inputs, binary = oip.split_request(body, header_length)
    columns: dict[str, list[Any]] = {}
    for tensor in inputs:
        name, datatype, shape = oip.tensor_header(tensor, columns)
        params = tensor.get("parameters") or {}
        if isinstance(params, dict) and params.get("binary_data_size") is not None:
            raise InvalidInputError(
                f"input {name!r}: binary tensor data is not accepted by an endpoint that looks its features up: "
                "send entity keys and request-time fields as JSON 'data'",
                field=name,
            )
        if "data" not in tensor:
            raise input_error(name, "no data", expected="'data'", got="none")
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise input_error(name, "wrong shape", expected="[n] or [n, 1]: one value per row", got=shape)
        columns[name] = oip.json_tensor(name, datatype, shape, tensor["data"]).reshape(-1).tolist()
    if len(binary):
        raise InvalidInputError(
            f"body: {len(binary)} bytes of binary data: an endpoint that looks its features up takes JSON tensors",
            field="body",
        )
    _, _, count = _table(columns, "inputs")
    parameters = oip.request_parameters(doc)
    entity, segments = payloads.parse_meta(parameters, count)
    outputs = oip.requested_outputs(doc, model)
    request_id = doc.get("id")
    return FeatureRequest(
        "v2",
        "inputs",
        None,
        columns,
        count,
        frozenset(n for n, _ in outputs),
        entity,
        segments,
        oip_outputs=outputs,
        id=request_id if isinstance(request_id, str) else None,
        parameters=parameters,
    )


@dataclass
class LookedUp:
    """A request after its lookup: what the model receives and what the prediction log records."""

    #: the model's inputs, by name, validated against its signature
    columns: Columns
    rows: int
    #: the entity keys, then the model's inputs (looked-up values included)
    log_columns: Columns
    entity_id: str | list[str] | None
    #: the entity keys as sent, for messages
    keys: dict[str, list[Any]]
    #: (row, feature) the online store had no value for: the first few, and how many in all
    missing: list[tuple[int, str]] = field(default_factory=list)
    missing_count: int = 0

    def parsed(self, request: FeatureRequest) -> Any:
        """The parsed request the rest of the request path expects (an OIP request, or a JSON one)."""
        if request.protocol == "v2":
            return oip.InferRequest(self.columns, self.rows, request.oip_outputs, request.id, request.parameters)
        return payloads.Parsed(
            self.columns, self.rows, request.wanted, self.entity_id, request.segments, request.requested
        )


def _key_array(values: list[Any]) -> np.ndarray[Any, Any]:
    """Entity keys as a log column: integers when they all are, else strings."""
    if all(type(v) is int for v in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            pass
    return np.array([str(v) for v in values], dtype=object)


class FeatureEndpoint:
    """One feature service as models use it: its :class:`~mlpilot.features.FeatureLookup` and metrics."""

    def __init__(self, config: FeaturesConfig, lookup: FeatureLookup, metrics: ServingMetrics) -> None:
        self.config = config
        self.lookup = lookup
        self.join_keys: tuple[str, ...] = tuple(lookup.join_keys)
        self.features: tuple[str, ...] = tuple(lookup.features)
        self._features = frozenset(self.features)
        self._metrics = metrics
        self._children: dict[str, tuple[Any, Any]] = {}

    def check_model(self, model: ServedModel) -> str | None:
        """Why ``model`` cannot be served with this service, or None (and a log line saying who sends what)."""
        schema = model.schema
        if schema.kind == "ndarray":
            return (
                f"model {model.name!r} version {model.version} takes one tensor ({schema.names[0]!r}), not named "
                f"inputs: to look its inputs up from feature service {self.config.service!r}, log it with a "
                "DataFrame input example (column names = feature names)"
            )
        looked = [n for n in schema.names if n in self._features]
        sent = [n for n in schema.names if n not in self._features]
        logger.info(
            "model %s version %s: %s looked up from feature service %r by %s; callers send %s",
            model.name,
            model.version,
            ", ".join(looked) or "nothing",
            self.config.service,
            ", ".join(self.join_keys),
            ", ".join(dict.fromkeys([*self.join_keys, *sent])),
        )
        return None

    def _metric_children(self, model: str) -> tuple[Any, Any]:
        children = self._children.get(model)
        if children is None:
            m = self._metrics
            children = self._children[model] = (m.feature_lookup_seconds.labels(model), m.feature_missing.labels(model))
        return children

    def _check(self, request: FeatureRequest, model: ServedModel) -> None:
        """Every row has the entity keys and the model's request-time inputs, and sends no looked-up feature."""
        service = self.config.service
        keys = self.join_keys
        required = [n for n in model.schema.names if n not in self._features and n not in keys]
        allowed = frozenset((*keys, *model.schema.names))

        def no_key(where: str) -> InvalidInputError:
            return InvalidInputError(
                f"{where}: missing entity key: model {model.name!r} looks its features up from feature service "
                f"{service!r} by {', '.join(keys)}",
                field=where,
            )

        def bad_key(where: str, value: Any) -> InvalidInputError:
            return InvalidInputError(
                f"{where}: entity keys are integers or strings, got {_kind(value)}", field=where, got=_kind(value)
            )

        def no_input(where: str, name: str) -> InvalidInputError:
            return InvalidInputError(
                f"{where}: missing input: model {model.name!r} takes {name!r} and feature service {service!r} does "
                "not provide it, so requests must send it",
                field=where,
            )

        def sent(where: str, name: str) -> InvalidInputError:
            return InvalidInputError(
                f"{where}: {name!r} is looked up from feature service {service!r}: send only entity keys "
                f"({', '.join(keys)}) and request-time fields",
                field=where,
            )

        def unknown(where: str) -> InvalidInputError:
            return InvalidInputError(
                f"{where}: unknown field: expected entity keys ({', '.join(keys)})"
                + (f" and the request-time inputs of model {model.name!r} ({', '.join(required)})" if required else ""),
                field=where,
            )

        if request.rows is not None:
            features = self._features
            for i, row in enumerate(request.rows):
                for key in keys:
                    value = row.get(key, _ABSENT)
                    if value is _ABSENT:
                        raise no_key(request.locate(i, key))
                    if not _is_key(value):
                        raise bad_key(request.locate(i, key), value)
                for name in required:
                    if name not in row:
                        raise no_input(request.locate(i, name), name)
                if not features.isdisjoint(row):
                    name = next(n for n in row if n in features)
                    raise sent(request.locate(i, name), name)
                if not allowed.issuperset(row):
                    raise unknown(request.locate(i, next(n for n in row if n not in allowed)))
            return
        columns = request.columns or {}
        where = request.where
        for key in keys:
            if key not in columns:
                raise no_key(f"{where}.{key}")
            for i, value in enumerate(columns[key]):
                if not _is_key(value):
                    raise bad_key(request.locate(i, key), value)
        for name in required:
            if name not in columns:
                raise no_input(f"{where}.{name}", name)
        for name in columns:
            if name in self._features:
                raise sent(f"{where}.{name}", name)
            if name not in allowed:
                raise unknown(f"{where}.{name}")

    async def resolve(self, request: FeatureRequest, model: ServedModel, request_id: str, arrived_ms: int) -> LookedUp:
        """Check ``request``, look its features up as of its arrival, and build the model's inputs."""
        if model.schema.kind == "ndarray":  # a version swapped in since start-up may have lost its names
            raise MlpilotError(self.check_model(model) or "this model takes no named inputs")
        self._check(request, model)
        seconds, missing_counter = self._metric_children(model.name)
        started = time.perf_counter()
        columns = await self.lookup.alookup(request.data, now_us=arrived_ms * 1000, request_id=request_id)
        seconds.observe(time.perf_counter() - started)
        schema = model.schema
        keys = {k: columns[k] for k in self.join_keys}
        looked = LookedUp({}, request.count, {}, request.entity_id, keys)
        for spec in schema.inputs:
            values = columns[spec.name]
            if spec.name in self._features:
                nulls = values.count(None)
                if nulls:
                    looked.missing_count += nulls
                    room = _EXAMPLES - len(looked.missing)
                    if room > 0:
                        looked.missing += [(i, spec.name) for i, v in enumerate(values) if v is None][:room]
                    if not spec.text and spec.np_dtype.kind != "f":
                        # An integer or boolean input has no way to say "missing": no point asking the model.
                        missing_counter.inc(looked.missing_count)
                        raise self.missing_error(request, looked, model, f"input {spec.name!r} is {spec.dtype}")
            looked.columns[spec.name] = schema.check(spec.name, values)
        if looked.missing_count:
            missing_counter.inc(looked.missing_count)
        for key in self.join_keys:
            if key not in looked.columns:
                looked.log_columns[key] = _key_array(keys[key])
        looked.log_columns.update(looked.columns)
        if len(self.join_keys) == 1:
            looked.entity_id = [str(v) for v in keys[self.join_keys[0]]]
        return looked

    def missing_error(
        self, request: FeatureRequest, looked: LookedUp, model: ServedModel, cause: str | None
    ) -> MissingFeaturesError:
        """The 422 for a request whose model could not do without a value the online store lacks."""
        row, name = looked.missing[0]
        where = request.locate(row, name)
        entity = ", ".join(f"{k}={looked.keys[k][row]!r}" for k in self.join_keys)
        message = (
            f"{where}: the online store has no value for {entity} (an unknown entity, or a value older than its "
            f"view's TTL) and model {model.name!r} cannot predict without it"
        )
        more = looked.missing_count - 1
        if more:
            message += f" ({more} more missing value{'s' if more > 1 else ''} in this request)"
        if cause:
            message += f": {cause}"
        return MissingFeaturesError(message, field=where)


class ServingFeatures:
    """The feature lookups of one model server: built from :class:`FeaturesConfig` entries at start-up and on
    config changes (blocking), rebuilt by :meth:`refresh` when the registered definitions change, found by
    served model name on a request (a dictionary lookup).

    ``specs`` provides the registered definitions and ``version`` (optional) their version; ``online_url`` is
    the online store of configs that name none (default: the ``features_online_url`` setting, else the
    embedded SQLite store).
    """

    def __init__(
        self,
        specs: FeatureSpecs | None,
        *,
        online_url: str | None,
        metrics: ServingMetrics,
        version: FeatureVersion | None = None,
    ) -> None:
        self._specs = specs
        self._version = version
        self._online_url = online_url
        self._metrics = metrics
        self._endpoints: dict[FeaturesConfig, FeatureEndpoint] = {}
        #: the definitions version each endpoint was built from (None: unknown)
        self._built: dict[FeaturesConfig, int | None] = {}
        #: endpoints swapped out by the last refresh, closed by the next one (requests may still hold them)
        self._retired: list[FeatureEndpoint] = []
        self._stores: dict[str, OnlineStore] = {}
        self._by_name: dict[str, FeatureEndpoint] = {}
        self._lock = threading.Lock()
        self._closed = False

    def get(self, name: str) -> FeatureEndpoint | None:
        """The endpoint features of served model ``name``, if it has any."""
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def built_version(self, config: FeaturesConfig) -> int | None:
        """The definitions version the lookup of ``config`` was built from (None: unknown or not built)."""
        with self._lock:
            return self._built.get(config)

    def prepare(self, config: ServeConfig) -> None:
        """Build the lookup of every feature service ``config`` names (reusing built ones). Raises
        :class:`~mlpilot.errors.ConfigError` naming the model and the service when one cannot be built."""
        for model in config.models:
            self.prepare_model(model)

    def prepare_model(self, model: ModelConfig) -> FeatureEndpoint | None:
        fc = model.features
        if fc is None:
            return None
        with self._lock:
            found = self._endpoints.get(fc)
        if found is not None:
            return found
        # The version is read before the definitions: an apply landing in between costs one extra rebuild
        # on the next refresh, never a lookup left on old definitions.
        version = self._registered_version(fc.project)
        endpoint = self._build(fc, f"model {model.ref!r}, project {fc.project!r}")
        with self._lock:
            kept = self._endpoints.setdefault(fc, endpoint)
            if kept is endpoint:
                self._built[fc] = version
        if kept is not endpoint:
            endpoint.lookup.close()
        return kept

    def _registered_version(self, project: str) -> int | None:
        if self._version is None:
            return None
        try:
            return self._version(project)
        except Exception as exc:  # only an optimisation at build time: refresh() retries
            logger.warning("feature definitions of project %r: cannot read their version: %s", project, exc)
            return None

    def _build(self, fc: FeaturesConfig, where: str) -> FeatureEndpoint:
        if self._specs is None:
            raise ConfigError(
                f"{where}: features: this server has no feature registry to read service {fc.service!r} from "
                "(give ModelServer feature_specs=, or RegistrySource features=)",
                key="features",
            )
        from mlpilot.features.serving import FeatureLookup

        try:
            specs = self._specs(fc.project)
        except MlpilotError as exc:
            raise ConfigError(
                f"{where}: features: cannot read the registered feature definitions: {exc.message}",
                key="features.project",
            ) from exc
        store = self._store(fc, where)
        try:
            lookup = FeatureLookup.from_specs(specs, fc.service, store=store)
        except InvalidInputError as exc:
            raise ConfigError(f"{where}: features.service: {exc.message}", key="features.service") from exc
        return FeatureEndpoint(fc, lookup, self._metrics)

    def refresh(self) -> list[FeaturesConfig]:
        """Rebuild the lookups whose project registered a new definitions version since they were built, and
        swap them in at once; returns the configs rebuilt (blocking: run it off the event loop).

        The version check is one small read per project in use. New lookups are built next to the serving
        ones, then every served name moves to its new lookup in one assignment; requests that hold the old one
        finish on it (it is closed by the next refresh). Definitions that cannot serve a config (its service
        was removed, say) are logged and the current lookup stays.
        """
        if self._version is None or self._closed:
            return []
        with self._lock:
            retired, self._retired = self._retired, []
            built = dict(self._built)
        for done in retired:
            done.lookup.close()
        versions: dict[str, int] = {}
        for project in sorted({fc.project for fc in built}):
            try:
                versions[project] = self._version(project)
            except Exception as exc:  # the registry may be unreachable: keep serving, ask again next time
                logger.warning("feature definitions of project %r: cannot read their version: %s", project, exc)
        fresh: dict[FeaturesConfig, tuple[FeatureEndpoint, int]] = {}
        for fc, had in built.items():
            now = versions.get(fc.project)
            if now is None or now == had:
                continue
            where = f"feature service {fc.service!r}, project {fc.project!r}, definitions version {now}"
            try:
                fresh[fc] = (self._build(fc, where), now)
            except MlpilotError as exc:
                logger.error("%s cannot be served, keeping the current lookup: %s", where, exc.message)
                with self._lock:  # not retried until the next apply
                    if fc in self._built:
                        self._built[fc] = now
        if not fresh:
            return []
        moved: dict[int, FeatureEndpoint] = {}
        unused: list[FeatureEndpoint] = []
        with self._lock:
            for fc, (endpoint, version) in fresh.items():
                old = self._endpoints.get(fc)
                if old is None:  # the server closed meanwhile
                    unused.append(endpoint)
                    continue
                self._endpoints[fc] = endpoint
                self._built[fc] = version
                self._retired.append(old)
                moved[id(old)] = endpoint
            self._by_name = {name: moved.get(id(e), e) for name, e in self._by_name.items()}
        for endpoint in unused:
            endpoint.lookup.close()
        if self._closed:  # the server shut down while these were built: their store is not ours to keep
            self.close()
        swapped = [fc for fc in fresh if all(e.config != fc for e in unused)]
        for fc in swapped:
            logger.info(
                "feature service %r (project %r): now serving definitions version %s",
                fc.service,
                fc.project,
                fresh[fc][1],
            )
        return swapped

    def _store(self, fc: FeaturesConfig, where: str) -> OnlineStore:
        from mlpilot.features.online import open_online_store

        url = fc.online_url or self._default_url()
        with self._lock:
            store = self._stores.get(url)
        if store is not None:
            return store
        try:
            store = open_online_store(url)
        except MlpilotError as exc:
            # The URL may hold a password: the message names the setting, not the URL.
            raise ConfigError(f"{where}: features.online_url: {exc.message}", key="features.online_url") from exc
        with self._lock:
            kept = self._stores.setdefault(url, store)
        if kept is not store:
            store.close()
        return kept

    def _default_url(self) -> str:
        if self._online_url:
            return self._online_url
        from mlpilot.config import load_settings
        from mlpilot.features.online import default_online_url

        settings = load_settings()
        return settings.features_online_url or default_online_url(settings.home)

    def bind(self, config: ServeConfig, repository: ModelRepository, *, strict: bool = True) -> None:
        """Point each served name at its model config's features and check the loaded versions can use them.

        With ``strict``, a problem raises :class:`~mlpilot.errors.ConfigError` (at start-up); otherwise it is
        logged and the affected requests fail with a message saying why (after a live config change).
        """
        named = {(m.ref, m.name) for m in config.models if m.name is not None}
        wanted: dict[str, FeaturesConfig | None] = {}
        problems: list[str] = []
        for item in repository.describe():
            name = item["name"]
            for mc in config.models:
                if mc.ref not in item["refs"] or mc.name not in (None, name):
                    continue
                if mc.name is None and (mc.ref, name) in named:
                    continue
                if name in wanted and wanted[name] != mc.features:
                    problems.append(f"model {name!r}: its references declare different features")
                wanted[name] = mc.features
        for name, fc in wanted.items():
            endpoint = self._endpoint(fc)
            if endpoint is None:
                continue
            for version in repository.versions(name):
                problem = endpoint.check_model(repository.lookup(name, version).model)
                if problem is not None:
                    problems.append(problem)
        if problems and strict:
            raise ConfigError("; ".join(problems), key="features")
        for problem in problems:
            logger.error("%s", problem)
        # Read under the lock: a refresh swapping lookups meanwhile is seen, never undone.
        with self._lock:
            found = {name: self._endpoints.get(fc) if fc is not None else None for name, fc in wanted.items()}
            self._by_name = {name: e for name, e in found.items() if e is not None}

    def _endpoint(self, fc: FeaturesConfig | None) -> FeatureEndpoint | None:
        if fc is None:
            return None
        with self._lock:
            return self._endpoints.get(fc)

    def close(self) -> None:
        """Stop every lookup and close the online stores this server opened."""
        with self._lock:
            self._closed = True
            endpoints, self._endpoints = [*self._endpoints.values(), *self._retired], {}
            stores, self._stores = list(self._stores.values()), {}
            self._by_name, self._built, self._retired = {}, {}, []
        for endpoint in endpoints:
            endpoint.lookup.close()
        for store in stores:
            store.close()
