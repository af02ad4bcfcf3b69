"""Per-model input validation, compiled once from the registered signature.

Every protocol (OIP tensors, MLflow payloads, plain JSON rows) is turned into the same thing before it reaches
the batcher: a dict of NumPy arrays keyed by input name, each with the batch on its first axis, checked
against the signature's names, dtypes and shapes. A wrong input is refused with an
:class:`~mlpilot.errors.InvalidInputError` that names the input, what was expected and what came::

    >>> from mlpilot.registry.signature import Signature, TensorSpec
    >>> sig = Signature(kind="ndarray", inputs=[TensorSpec(name="input", dtype="float64", shape=[-1, 2])])
    >>> schema = InputSchema.compile(sig)
    >>> schema.from_rows([[1.0, 2.0], [3.0, 4.0]])["input"].shape
    (2, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpilot.errors import InvalidInputError
from mlpilot.serving.dtypes import numpy_dtype, oip_datatype
from mlpilot.serving.errors import input_error

if TYPE_CHECKING:
    from mlpilot.registry.signature import Signature

__all__ = ["Columns", "InputSchema", "TensorInfo", "check_rows"]

Columns = dict[str, np.ndarray[Any, Any]]
_KIND_WORDS = {"b": "bool", "i": "integer", "u": "integer", "f": "number", "U": "string", "S": "bytes"}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output as the server sees it: registry dtype name, OIP datatype, NumPy dtype, shape."""

    name: str
    dtype: str
    datatype: str
    np_dtype: np.dtype[Any]
    shape: tuple[int, ...]

    @classmethod
    def of(cls, name: str, dtype: str, shape: Sequence[int]) -> TensorInfo:
        datatype = oip_datatype(dtype)
        return cls(name, dtype, datatype, numpy_dtype(datatype), tuple(int(d) for d in shape) or (-1,))

    @property
    def text(self) -> bool:
        return self.datatype == "BYTES"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def _describe(arr: np.ndarray[Any, Any]) -> str:
    if arr.dtype.kind == "O":
        kinds = sorted({type(v).__name__ for v in arr.reshape(-1)[:1000]})
        return f"values of type {'/'.join(kinds)}"
    return f"{_KIND_WORDS.get(arr.dtype.kind, str(arr.dtype))} values ({arr.dtype})"


def _coerce(spec: TensorInfo, value: Any) -> np.ndarray[Any, Any]:
    """``value`` (JSON lists or an array) as ``spec``'s dtype, refusing any cast that loses information."""
    try:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise input_error(spec.name, "not a rectangular array", expected=_shape_text(spec), got=str(exc)) from exc
    target = spec.np_dtype
    if arr.dtype == target:
        return arr
    kind = arr.dtype.kind
    if spec.text:
        if kind in "US":
            return arr.astype(object)
        if kind == "O" and all(v is None or isinstance(v, str) for v in arr.reshape(-1)):
            return arr
        raise input_error(spec.name, "wrong dtype", expected=f"strings ({spec.dtype})", got=_describe(arr))
    if kind == "O":
        flat = arr.reshape(-1)
        # JSON has no NaN: null is how a caller says "missing", and float models take NaN for it.
        if target.kind == "f" and all(v is None or isinstance(v, int | float) for v in flat):
            return np.array(arr.tolist(), dtype=target)
        raise input_error(spec.name, "wrong dtype", expected=f"{spec.dtype} values", got=_describe(arr))
    if kind not in "biuf":
        raise input_error(spec.name, "wrong dtype", expected=f"{spec.dtype} values", got=_describe(arr))
    if np.can_cast(arr.dtype, target, "safe") or (kind in "biu" and target.kind == "f"):
        return arr.astype(target)
    if target.kind in "iu" and kind in "iuf":
        ok = True
        if kind == "f":
            ok = bool(np.isfinite(arr).all()) and bool((np.mod(arr, 1) == 0).all())
        if ok and arr.size:
            info = np.iinfo(target)
            ok = info.min <= arr.min() and arr.max() <= info.max
        if ok:
            return arr.astype(target)
    if target.kind == "f" and kind == "f":
        return arr.astype(target)  # float64 JSON numbers into a float32 model: the precision JSON had anyway
    raise input_error(spec.name, "wrong dtype", expected=f"{spec.dtype} values", got=_describe(arr))


def _shape_text(spec: TensorInfo) -> str:
    return str(list(spec.shape)).replace("-1", "n")


def _check_shape(spec: TensorInfo, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    want = spec.shape
    if (
        arr.ndim == len(want) - 1
        and len(want) > 1
        and all(d in (-1, n) for d, n in zip(want[1:], arr.shape, strict=False))
    ):
        arr = arr[np.newaxis, ...]  # one row given without its batch axis
    elif len(want) == 1 and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]  # a column given as [n, 1]
    if arr.ndim != len(want) or any(d not in (-1, n) for d, n in zip(want[1:], arr.shape[1:], strict=True)):
        raise input_error(spec.name, "wrong shape", expected=_shape_text(spec), got=list(arr.shape))
    return arr


def check_rows(columns: Columns) -> int:
    """The batch size shared by every input, or a 400 if they disagree."""
    sizes = {name: int(arr.shape[0]) for name, arr in columns.items()}
    distinct = set(sizes.values())
    if len(distinct) > 1:
        raise InvalidInputError(
            f"inputs have different batch sizes: {sizes}",
            field=next(iter(sizes)),
            expected="one size",
            got=sizes,
        )
    rows = distinct.pop() if distinct else 0
    if rows == 0:
        raise InvalidInputError("the request has no rows: expected at least one", field="inputs")
    return rows


class InputSchema:
    """The compiled validators of one model version's inputs."""

    def __init__(self, kind: str, inputs: Sequence[TensorInfo]) -> None:
        self.kind = kind
        self.inputs = tuple(inputs)
        self.by_name = {spec.name: spec for spec in self.inputs}
        self.names = [spec.name for spec in self.inputs]
        self._single = self.inputs[0] if kind == "ndarray" else None
        #: equal for two schemas that accept exactly the same inputs
        self.key = (kind, tuple((spec.name, spec.dtype, spec.shape) for spec in self.inputs))

    @classmethod
    def compile(cls, signature: Signature | None) -> InputSchema:
        """Validators for ``signature``; without one, any numeric 2-D array named ``input`` is accepted."""
        if signature is None:
            return cls("ndarray", [TensorInfo.of("input", "float64", (-1, -1))])
        specs = [TensorInfo.of(s.name, s.dtype, s.shape) for s in signature.inputs]
        return cls(signature.kind, specs)

    def metadata(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self.inputs]

    def _spec(self, name: str) -> TensorInfo:
        spec = self.by_name.get(name)
        if spec is None:
            raise input_error(name, "unknown input", expected=f"one of {self.names}", got=repr(name))
        return spec

    def _complete(self, columns: Columns) -> Columns:
        for name in self.names:
            if name not in columns:
                raise input_error(name, "missing", expected=f"inputs {self.names}", got=sorted(columns))
        check_rows(columns)
        return columns

    def check(self, name: str, value: Any) -> np.ndarray[Any, Any]:
        """One input, by name, converted to its dtype and checked against its shape."""
        spec = self._spec(name)
        return _check_shape(spec, _coerce(spec, value))

    def check_tensor(self, name: str, datatype: str, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """An OIP tensor that declared ``datatype``: the datatype must convert to the input's without loss."""
        spec = self._spec(name)
        if datatype != spec.datatype:
            lossless = (
                not spec.text
                and datatype != "BYTES"
                and (np.can_cast(numpy_dtype(datatype), spec.np_dtype, "safe") or datatype == "BOOL")
            )
            if not lossless:
                raise input_error(name, "wrong datatype", expected=spec.datatype, got=datatype)
            arr = arr.astype(spec.np_dtype)
        return _check_shape(spec, arr)

    def from_columns(self, mapping: Mapping[str, Any]) -> Columns:
        """Named inputs: ``{"age": [31, 45], "plan": ["a", "b"]}`` or ``{"input": [[...], ...]}``."""
        return self._complete({str(name): self.check(str(name), value) for name, value in mapping.items()})

    def from_rows(self, rows: Any) -> Columns:
        """Rows: lists in signature order (a 2-D array for a tensor input), or objects keyed by input name."""
        if isinstance(rows, Mapping):
            return self.from_columns(rows)
        if not isinstance(rows, list) or not rows:
            raise InvalidInputError(
                "instances: expected a non-empty list of rows", field="instances", expected="rows", got=rows
            )
        first = rows[0]
        if isinstance(first, Mapping):
            return self._from_records(rows)
        if self._single is not None:
            return {self._single.name: self.check(self._single.name, rows)}
        return self.from_split(self.names, rows)

    def _from_records(self, rows: list[Any]) -> Columns:
        names = self.names
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidInputError(
                    f"row {i}: expected an object keyed by input name, got {type(row).__name__}",
                    field=f"row {i}",
                )
            if len(row) != len(names) or any(k not in self.by_name for k in row):
                unknown = [k for k in row if k not in self.by_name]
                if unknown:
                    self._spec(str(unknown[0]))
                missing = [n for n in names if n not in row]
                raise input_error(missing[0], f"missing in row {i}", expected=f"inputs {names}", got=sorted(row))
        return self._complete({name: self.check(name, [row[name] for row in rows]) for name in names})

    def from_split(self, columns: Sequence[Any] | None, data: Any) -> Columns:
        """MLflow's ``dataframe_split``: column names and row-major data."""
        if not isinstance(data, list) or not data:
            raise InvalidInputError("data: expected a non-empty list of rows", field="data", got=data)
        if self._single is not None and len(self.inputs) == 1 and self._single.shape[1:] != ():
            # A tensor model fed a table: the columns are the tensor's features, in order.
            if columns is not None and len(self._single.shape) == 2 and self._single.shape[1] not in (-1, len(columns)):
                raise input_error(
                    self._single.name,
                    "wrong number of columns",
                    expected=self._single.shape[1],
                    got=len(columns),
                )
            return {self._single.name: self.check(self._single.name, data)}
        names = list(columns) if columns is not None else self.names
        for name in names:
            self._spec(str(name))
        if len(set(names)) != len(names):
            raise InvalidInputError(f"columns: duplicate names in {names}", field="columns", got=names)
        width = len(names)
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                got = len(row) if isinstance(row, list) else type(row).__name__
                raise InvalidInputError(
                    f"row {i}: expected {width} values ({', '.join(map(str, names))}), got {got}",
                    field=f"row {i}",
                    expected=width,
                    got=got,
                )
        by_column = list(zip(*data, strict=True))
        return self._complete({str(name): self.check(str(name), list(by_column[j])) for j, name in enumerate(names)})

    def to_model_input(self, columns: Columns) -> Any:
        """The canonical form the predictor takes: one array, a dict of arrays, or a DataFrame."""
        if self._single is not None:
            return columns[self._single.name]
        if self.kind == "dataframe":
            import pandas as pd

            return pd.DataFrame({name: columns[name] for name in self.names})
        return {name: columns[name] for name in self.names}
