"""Model signatures: input names, dtypes and shapes (``-1`` for the batch dimension) and the outputs, inferred
from an input example by running the model on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlpilot.errors import InvalidInputError
from mlpilot.registry.inputs import InputKind, canonical, is_dataframe, source_type

__all__ = ["Signature", "TensorSpec", "dtype_name", "infer_signature", "output_specs"]


class TensorSpec(BaseModel):
    """One named input or output: ``dtype`` is a NumPy dtype name, or ``string``/``category``/``object``."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=256)
    dtype: str = Field(min_length=1, max_length=64)
    shape: list[int] = Field(max_length=32)


class Signature(BaseModel):
    """What a model takes and returns.

    >>> sig = infer_signature(np.zeros((5, 3), dtype="float32"))
    >>> sig.kind, sig.inputs[0].shape
    ('ndarray', [-1, 3])
    """

    model_config = ConfigDict(frozen=True)

    kind: InputKind
    inputs: list[TensorSpec] = Field(min_length=1, max_length=10_000)
    outputs: list[TensorSpec] = Field(default_factory=list, max_length=10_000)
    #: The type of the example (``pandas``, ``arrow``, ``numpy``, ``dict``, ``list``): informative only.
    example_type: str = "numpy"

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]


def dtype_name(dtype: Any, values: Any = None) -> str:
    """A portable name for a NumPy, pandas or Arrow dtype (``float32``, ``string``, ``category``, ...)."""
    if isinstance(dtype, np.dtype):
        if dtype.kind in "US":
            return "string"
        if dtype.kind == "O":
            if values is not None and len(values) and all(isinstance(v, str) for v in values[:100]):
                return "string"
            return "object"
        return str(dtype)
    name = str(dtype)
    if name in ("str", "string") or name.startswith("string["):
        return "string"
    return "category" if name == "category" else name


def _array_spec(name: str, arr: np.ndarray[Any, Any]) -> TensorSpec:
    flat = arr.reshape(-1) if arr.dtype.kind == "O" else None
    return TensorSpec(name=name, dtype=dtype_name(arr.dtype, flat), shape=[-1, *arr.shape[1:]])


def _input_specs(kind: InputKind, value: Any) -> list[TensorSpec]:
    if kind == "dataframe":
        specs = []
        for column in value.columns:
            if not isinstance(column, str):
                raise InvalidInputError(
                    f"input_example: column names must be strings, got {column!r}", field="input_example"
                )
            series = value[column]
            specs.append(TensorSpec(name=column, dtype=dtype_name(series.dtype, series.to_numpy()), shape=[-1]))
        return specs
    if kind == "ndarray":
        return [_array_spec("input", value)]
    return [_array_spec(key, arr) for key, arr in value.items()]


def output_specs(result: Any) -> list[TensorSpec]:
    """Specs of what a model returned: one per DataFrame column or dict key, ``output_<i>`` for tuples."""
    if is_dataframe(result):
        return [
            TensorSpec(name=str(c), dtype=dtype_name(result[c].dtype, result[c].to_numpy()), shape=[-1])
            for c in result.columns
        ]
    if isinstance(result, Mapping):
        return [_array_spec(str(k), np.asarray(v)) for k, v in result.items()]
    if isinstance(result, tuple):
        return [_array_spec(f"output_{i}", np.asarray(v)) for i, v in enumerate(result)]
    name = getattr(result, "name", None)
    arr = np.asarray(result)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return [_array_spec(name if isinstance(name, str) and name else "output", arr)]


def infer_signature(
    example: Any, predict: Callable[[Any], Any] | None = None, *, field: str = "input_example"
) -> Signature:
    """The signature of a model that takes ``example``; outputs come from ``predict(example)`` when given.

    ``example`` may be a NumPy array, a pandas DataFrame, an Arrow table or record batch, a dict of arrays, or
    a list (of rows, or of dicts). ``predict`` receives the example in canonical form (DataFrame, array or
    dict).
    """
    kind, value = canonical(example, field=field)
    inputs = _input_specs(kind, value)
    names = [spec.name for spec in inputs]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"{field}: input names must be unique, got {names}", field=field)
    outputs = output_specs(predict(value)) if predict is not None else []
    return Signature(kind=kind, inputs=inputs, outputs=outputs, example_type=source_type(example))
