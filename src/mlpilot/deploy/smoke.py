"""The smoke inputs of a preview verification: one ``/v1`` row per request.

In order of preference: the caller's rows; else rows of the version's stored sample (its input example, or the
sample of its training data); else rows generated from its input signature (zeros, ones, small numbers, empty
text). An endpoint with a feature service takes entity keys, which neither the sample nor the signature holds:
its callers' rows must be given.

>>> from mlpilot.registry import Signature, TensorSpec
>>> sig = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 3])])
>>> signature_rows(sig, 2)
[[0.0, 1.0, -1.0], [1.0, -1.0, 0.5]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlpilot.errors import InvalidInputError, MlpilotError

if TYPE_CHECKING:
    import pyarrow as pa

    from mlpilot.artifacts import ArtifactStore
    from mlpilot.registry import ModelVersionInfo, Signature, TensorSpec

__all__ = ["Source", "sample_rows", "signature_rows", "smoke_rows"]

Source = Literal["given", "sample", "signature"]
_NUMBERS = (0.0, 1.0, -1.0, 0.5, 2.0, -0.5)


def _generated(spec: TensorSpec, i: int) -> Any:
    """A plausible value of one input for row ``i``: varied numbers, alternating booleans, empty text."""
    dims = [1 if d < 0 else d for d in spec.shape[1:]]
    try:
        kind = np.dtype(spec.dtype).kind
    except TypeError:  # string, category, object
        kind = "U"
    count = math.prod(dims)
    if kind == "b":
        flat: list[Any] = [(i + j) % 2 == 1 for j in range(count)]
    elif kind in "iu":
        flat = [int(_NUMBERS[(i + j) % len(_NUMBERS)]) for j in range(count)]
        if kind == "u":
            flat = [abs(v) for v in flat]
    elif kind in "fc":
        flat = [_NUMBERS[(i + j) % len(_NUMBERS)] for j in range(count)]
    else:
        flat = ["" for _ in range(count)]
    if not dims:
        return flat[0]
    value: Any = np.asarray(flat, dtype=object).reshape(dims).tolist()
    return value


def signature_rows(signature: Signature, count: int) -> list[Any]:
    """``count`` rows generated from ``signature``: lists for one tensor input, else objects by input name."""
    if signature.kind == "ndarray" and len(signature.inputs) == 1:
        return [_generated(signature.inputs[0], i) for i in range(count)]
    return [{spec.name: _generated(spec, i) for spec in signature.inputs} for i in range(count)]


def _json_safe(value: Any) -> Any:
    """A sample value as JSON can carry it: NaN and infinities (missing values) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _input_value(table: pa.Table, spec: TensorSpec, i: int) -> Any:
    """Input ``spec`` of row ``i``: its column (a scalar, or a flattened tensor reshaped), or the columns
    ``name_0 … name_k`` a 2-D array input was stored as (see :func:`mlpilot.registry.inputs.to_arrow_table`)."""
    names = table.column_names
    if spec.name in names:
        value = table.column(spec.name)[i].as_py()
        if isinstance(value, list) and len(spec.shape) > 2:
            value = np.asarray(value, dtype=object).reshape([d if d > 0 else -1 for d in spec.shape[1:]]).tolist()
        return _json_safe(value)
    if len(spec.shape) == 2 and spec.shape[1] > 0:
        columns = [f"{spec.name}_{j}" for j in range(spec.shape[1])]
        if all(c in names for c in columns):
            return [_json_safe(table.column(c)[i].as_py()) for c in columns]
    raise KeyError(spec.name)


def sample_rows(signature: Signature | None, table: pa.Table, count: int) -> list[Any] | None:
    """``count`` rows of the stored sample ``table`` (cycling), shaped for ``signature``; None when the sample
    does not hold the signature's inputs."""
    n = table.num_rows
    if not n:
        return None
    if signature is None:
        return [[_json_safe(v) for v in table.slice(i % n, 1).to_pylist()[0].values()] for i in range(count)]
    try:
        if signature.kind == "ndarray" and len(signature.inputs) == 1:
            return [_input_value(table, signature.inputs[0], i % n) for i in range(count)]
        return [{spec.name: _input_value(table, spec, i % n) for spec in signature.inputs} for i in range(count)]
    except (KeyError, ValueError):
        return None


def _given_rows(signature: Signature | None, inputs: Sequence[Any], count: int) -> list[Any]:
    rows = list(inputs)
    if not rows:
        raise InvalidInputError("inputs: expected at least one row", field="inputs")
    single = signature is not None and signature.kind == "ndarray" and len(signature.inputs) == 1
    name = signature.inputs[0].name if signature is not None and single else None
    shaped = []
    for row in rows:
        # A CSV row is an object; a model taking one tensor takes it as a list of its values, in order.
        if single and isinstance(row, Mapping) and name not in row:
            row = list(row.values())
        shaped.append(row)
    return [shaped[i % len(shaped)] for i in range(count)]


def smoke_rows(
    version: ModelVersionInfo,
    *,
    inputs: Sequence[Any] | None,
    count: int,
    artifacts: ArtifactStore | None,
    entity_keys: bool = False,
) -> tuple[list[Any], Source]:
    """``count`` one-row request bodies' rows for ``version``, and where they came from.

    ``entity_keys``: the endpoint looks its inputs up from a feature service, so only given rows will do.
    """
    signature = version.signature
    if inputs is not None:
        return _given_rows(signature, inputs, count), "given"
    if entity_keys:
        raise InvalidInputError(
            "inputs: the endpoint looks its inputs up from a feature service: pass smoke inputs with the entity "
            "keys (and request-time fields) its callers send",
            field="inputs",
        )
    if version.sample_sha256 is not None and artifacts is not None:
        from mlpilot.registry import read_sample

        try:
            table = read_sample(version.sample_sha256, artifacts)
        except MlpilotError:
            table = None  # an unreadable sample: the signature still says what to send
        rows = sample_rows(signature, table, count) if table is not None else None
        if rows is not None:
            return rows, "sample"
    if signature is None:
        raise InvalidInputError(
            f"inputs: v{version.version} has no input sample or signature to build smoke requests from: pass inputs",
            field="inputs",
        )
    return signature_rows(signature, count), "signature"
