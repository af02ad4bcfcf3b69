"""The two plain JSON protocols: MLflow's ``/invocations`` and mlpilot's ``/v1/models/{m}:predict``.

``/invocations`` takes exactly one of ``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs``
(as ``mlflow models serve`` does; ``text/csv`` bodies too) and answers ``{"predictions": ...}``. ``/v1`` takes
``{"instances": [...]}`` (rows as lists or objects) or ``{"inputs": {...}}`` (columns), optionally
``"outputs": ["probabilities", ...]``, and answers ``{"predictions": ..., "model": ..., "version": ...}``.

Both accept the prediction-log fields ``entity_id`` (a string, or one per row) and ``segments`` (an object of
short strings): at the top level for ``/v1``, inside ``params`` for ``/invocations``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlpilot.errors import InvalidInputError
from mlpilot.serving.model import Outputs, ServedModel
from mlpilot.serving.schema import Columns, check_rows

__all__ = [
    "Parsed",
    "check_v1_fields",
    "encode_invocations",
    "encode_v1",
    "invocations_format",
    "invocations_params",
    "parse_csv",
    "parse_invocations",
    "parse_meta",
    "parse_v1",
    "v1_outputs",
]

_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_OPTS = orjson.OPT_SERIALIZE_NUMPY
_MAX_SEGMENTS = 32


@dataclass
class Parsed:
    columns: Columns
    rows: int
    outputs: frozenset[str]
    entity_id: str | list[str] | None = None
    segments: dict[str, str] = field(default_factory=dict)
    #: outputs the caller named (``/v1``'s ``outputs``), returned under ``outputs``
    requested: tuple[str, ...] = ()


def load_json(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"body: not valid JSON: {exc}", field="body") from exc
    if not isinstance(doc, dict):
        raise InvalidInputError(f"body: expected a JSON object, got {type(doc).__name__}", field="body")
    return doc


def parse_meta(source: dict[str, Any], rows: int) -> tuple[str | list[str] | None, dict[str, str]]:
    """The caller's ``entity_id`` and ``segments``, checked: they end up as columns of the prediction log."""
    entity = source.get("entity_id")
    if entity is not None:
        if isinstance(entity, int | float) and not isinstance(entity, bool):
            entity = str(entity)
        if isinstance(entity, list):
            if len(entity) != rows or not all(isinstance(e, str | int) for e in entity):
                raise InvalidInputError(
                    f"entity_id: expected a string or a list of {rows} strings (one per row)",
                    field="entity_id",
                    expected=rows,
                    got=len(entity),
                )
            entity = [str(e) for e in entity]
        elif not isinstance(entity, str) or len(entity) > 256:
            raise InvalidInputError("entity_id: expected a string of at most 256 characters", field="entity_id")
    segments = source.get("segments")
    if segments is None:
        return entity, {}
    ok = isinstance(segments, dict) and len(segments) <= _MAX_SEGMENTS
    if ok:
        assert isinstance(segments, dict)
        ok = all(
            isinstance(k, str) and 0 < len(k) <= 64 and isinstance(v, str | int | float | bool) and len(str(v)) <= 256
            for k, v in segments.items()
        )
    if not ok:
        raise InvalidInputError(
            f"segments: expected an object of at most {_MAX_SEGMENTS} short string values", field="segments"
        )
    return entity, {k: str(v) for k, v in segments.items()}


def invocations_format(doc: dict[str, Any]) -> str:
    """Which of MLflow's input formats an ``/invocations`` body uses (exactly one, besides ``params``)."""
    present = [k for k in _FORMATS if k in doc]
    if len(present) != 1:
        raise InvalidInputError(
            f"body: expected exactly one of {', '.join(_FORMATS)}, got {sorted(doc) or 'none'}",
            field="body",
            expected=list(_FORMATS),
            got=sorted(doc),
        )
    unknown = [k for k in doc if k not in _FORMATS and k != "params"]
    if unknown:
        raise InvalidInputError(
            f"{unknown[0]}: unknown field (expected one of {', '.join(_FORMATS)} and params)",
            field=unknown[0],
        )
    return present[0]


def invocations_params(doc: dict[str, Any], rows: int) -> tuple[str | list[str] | None, dict[str, str]]:
    """``params.entity_id`` and ``params.segments`` of an ``/invocations`` body; nothing else is accepted."""
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInputError("params: expected an object", field="params")
    extra = [k for k in params if k not in ("entity_id", "segments")]
    if extra:
        raise InvalidInputError(
            f"params.{extra[0]}: unsupported parameter (expected entity_id, segments)",
            field=f"params.{extra[0]}",
        )
    return parse_meta(params, rows)


def parse_invocations(doc: dict[str, Any], model: ServedModel) -> Parsed:
    """An MLflow scoring request."""
    key = invocations_format(doc)
    value = doc[key]
    schema = model.schema
    if key == "dataframe_split":
        if not isinstance(value, dict) or "data" not in value:
            raise InvalidInputError("dataframe_split: expected an object with 'columns' and 'data'", field=key)
        columns = value.get("columns")
        if columns is not None and not isinstance(columns, list):
            raise InvalidInputError("dataframe_split.columns: expected a list of names", field="columns")
        cols = schema.from_split(columns, value["data"])
    elif key == "dataframe_records":
        if not isinstance(value, list) or not value or not all(isinstance(r, dict) for r in value):
            raise InvalidInputError("dataframe_records: expected a non-empty list of objects", field=key)
        cols = schema.from_rows(value)
    elif key == "inputs" and isinstance(value, dict):
        cols = schema.from_columns(value)
    else:
        cols = schema.from_rows(value)
    rows = check_rows(cols)
    entity, segments = invocations_params(doc, rows)
    return Parsed(cols, rows, frozenset(model.predict_outputs), entity, segments)


def parse_csv(body: bytes, model: ServedModel) -> Parsed:
    """An MLflow ``text/csv`` request: a header row of column names, then rows; empty cells are missing."""
    try:
        reader = csv.reader(io.StringIO(body.decode()))
        header = next(reader)
        data = [row for row in reader if row]
    except (UnicodeDecodeError, StopIteration, csv.Error) as exc:
        raise InvalidInputError(f"body: not a CSV table with a header row: {exc}", field="body") from exc
    schema = model.schema
    parsed_rows: list[list[Any]] = []
    single = schema.inputs[0] if len(schema.inputs) == 1 and len(schema.inputs[0].shape) == 2 else None
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise InvalidInputError(
                f"row {i}: expected {len(header)} values, got {len(row)}",
                field=f"row {i}",
                expected=len(header),
            )
        values: list[Any] = []
        for j, cell in enumerate(row):
            spec = single or schema.by_name.get(header[j])
            if spec is not None and not spec.text:
                try:
                    values.append(float(cell) if cell else None)
                except ValueError as exc:
                    raise InvalidInputError(
                        f"input {header[j]!r}: wrong dtype: expected {spec.dtype} values, got {cell!r}",
                        field=header[j],
                    ) from exc
            else:
                values.append(cell)
        parsed_rows.append(values)
    cols = schema.from_split(header, parsed_rows)
    return Parsed(cols, check_rows(cols), frozenset(model.predict_outputs))


def parse_v1(doc: dict[str, Any], model: ServedModel) -> Parsed:
    """A ``/v1/models/{m}:predict`` request."""
    schema = model.schema
    if "instances" in doc:
        cols = schema.from_rows(doc["instances"])
    elif "inputs" in doc:
        value = doc["inputs"]
        cols = schema.from_columns(value) if isinstance(value, dict) else schema.from_rows(value)
    else:
        raise InvalidInputError("body: expected 'instances' (rows) or 'inputs' (columns)", field="instances")
    check_v1_fields(doc)
    rows = check_rows(cols)
    outputs, requested = v1_outputs(doc, model)
    entity, segments = parse_meta(doc, rows)
    return Parsed(cols, rows, outputs, entity, segments, requested)


def check_v1_fields(doc: dict[str, Any]) -> None:
    """Refuse fields a ``/v1`` body does not have."""
    unknown = [k for k in doc if k not in ("instances", "inputs", "outputs", "entity_id", "segments")]
    if unknown:
        raise InvalidInputError(
            f"{unknown[0]}: unknown field (expected instances or inputs, outputs, entity_id, segments)",
            field=unknown[0],
        )


def v1_outputs(doc: dict[str, Any], model: ServedModel) -> tuple[frozenset[str], tuple[str, ...]]:
    """The outputs to compute for a ``/v1`` body, and those it named (``"outputs": [...]``)."""
    wanted = doc.get("outputs")
    if wanted is None:
        return frozenset(model.predict_outputs), ()
    if not isinstance(wanted, list) or not wanted or not all(isinstance(w, str) for w in wanted):
        raise InvalidInputError("outputs: expected a list of output names", field="outputs")
    unknown_out = [w for w in wanted if w not in model.output_names]
    if unknown_out:
        raise InvalidInputError(
            f"output {unknown_out[0]!r}: unknown output: expected one of {sorted(model.output_names)}",
            field="outputs",
            expected=sorted(model.output_names),
            got=unknown_out[0],
        )
    return frozenset(wanted) | frozenset(model.predict_outputs), tuple(wanted)


def _jsonable(arr: np.ndarray[Any, Any]) -> Any:
    return arr.tolist() if arr.dtype.kind in "OUS" or not arr.flags.c_contiguous else arr


def _predictions(model: ServedModel, outputs: Outputs) -> Any:
    names = model.predict_outputs
    if len(names) == 1:
        return _jsonable(outputs[names[0]])
    columns = {n: outputs[n].tolist() for n in names}
    rows = len(next(iter(columns.values())))
    return [{n: columns[n][i] for n in names} for i in range(rows)]


def encode_invocations(model: ServedModel, outputs: Outputs) -> bytes:
    return orjson.dumps({"predictions": _predictions(model, outputs)}, option=_OPTS)


def encode_v1(model: ServedModel, request_id: str, parsed: Parsed, outputs: Outputs) -> bytes:
    doc: dict[str, Any] = {
        "model": model.name,
        "version": model.version,
        "request_id": request_id,
        "predictions": _predictions(model, outputs),
    }
    if parsed.requested:
        doc["outputs"] = {n: _jsonable(outputs[n]) for n in parsed.requested}
    return orjson.dumps(doc, option=_OPTS)
