"""ONNX models, run with onnxruntime on the CPU. The format is a graph of operators: loading runs no code."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlpilot.errors import ArtifactError, InvalidInputError
from mlpilot.registry.flavors.base import Flavor, Handle, import_library
from mlpilot.registry.inputs import is_dataframe
from mlpilot.registry.signature import Signature, TensorSpec

__all__ = ["OnnxFlavor"]

_FILE = "model.onnx"
_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}


def _numpy_dtype(onnx_type: str) -> Any:
    name = _TYPES.get(onnx_type)
    if name is None:
        raise InvalidInputError(f"input: ONNX input type {onnx_type} is not supported", field="input")
    return object if name == "string" else np.dtype(name)


def _column(values: Any, onnx_type: str) -> np.ndarray[Any, Any]:
    arr = np.asarray(values)
    dtype = _numpy_dtype(onnx_type)
    return arr.astype(dtype) if arr.dtype != dtype else arr


def _feeds(session: Any, data: Any) -> dict[str, np.ndarray[Any, Any]]:
    inputs = session.get_inputs()
    if isinstance(data, Mapping):
        missing = [i.name for i in inputs if i.name not in data]
        if missing:
            raise InvalidInputError(f"{missing[0]}: the ONNX model needs input {missing[0]!r}", field=missing[0])
        return {i.name: _column(data[i.name], i.type) for i in inputs}
    if is_dataframe(data):
        names = [str(c) for c in data.columns]
        if all(i.name in names for i in inputs):
            # one graph input per column (skl2onnx's layout for mixed-type frames): each is a [N, 1] tensor
            return {i.name: _column(data[i.name].to_numpy().reshape(-1, 1), i.type) for i in inputs}
        data = data.to_numpy()
    if len(inputs) != 1:
        raise InvalidInputError(
            f"input: the ONNX model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}): pass a dict",
            field="input",
        )
    return {inputs[0].name: _column(data, inputs[0].type)}


def _as_matrix(value: Any) -> Any:
    # A ZipMap output is a list of {label: probability} dicts; callers want an [N, classes] matrix.
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        keys = list(value[0])
        return np.asarray([[row[k] for k in keys] for row in value])
    return value


def _session_handle(session: Any) -> Handle:
    outputs = [o.name for o in session.get_outputs()]
    proba_index = next((i for i, name in enumerate(outputs) if "prob" in name.lower()), None)

    def run(data: Any) -> list[Any]:
        return list(session.run(None, _feeds(session, data)))

    def predict(data: Any) -> Any:
        return _as_matrix(run(data)[0])

    def predict_proba(data: Any) -> Any:
        assert proba_index is not None
        return _as_matrix(run(data)[proba_index])

    return Handle(predict=predict, predict_proba=predict_proba if proba_index not in (None, 0) else None, raw=session)


class OnnxFlavor(Flavor):
    name = "onnx"
    extra = "onnx"
    distributions: ClassVar[tuple[tuple[str, ...], ...]] = (("onnxruntime",), ("numpy",))

    def matches(self, model: object) -> bool:
        cls = type(model)
        return cls.__name__ == "ModelProto" and cls.__module__.split(".", 1)[0] == "onnx"

    @staticmethod
    def _session(data: bytes) -> Any:
        ort = import_library("onnxruntime", "onnxruntime", "onnx")
        try:
            return ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ArtifactError(f"onnxruntime cannot load the model: {exc}") from exc

    def wrap(self, model: Any) -> Handle:
        return _session_handle(self._session(model.SerializeToString()))

    def save(self, model: Any, folder: Path, example: Any | None) -> dict[str, Any]:
        onnx = import_library("onnx", "onnx", "onnx")
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise InvalidInputError(f"model: not a valid ONNX model: {exc}", field="model") from exc
        (folder / _FILE).write_bytes(model.SerializeToString())
        return {"file": _FILE}

    def load(self, folder: Path, meta: dict[str, Any]) -> Handle:
        return _session_handle(self._session((folder / _FILE).read_bytes()))

    def describe(self, model: Any) -> Signature:
        session = self._session(model.SerializeToString())

        def spec(arg: Any) -> TensorSpec:
            shape = [d if isinstance(d, int) else -1 for d in arg.shape]
            return TensorSpec(name=arg.name, dtype=_TYPES.get(arg.type, arg.type), shape=shape or [-1])

        inputs = [spec(i) for i in session.get_inputs()]
        outputs = [spec(o) for o in session.get_outputs()]
        kind = "ndarray" if len(inputs) == 1 else "dict"
        if kind == "ndarray":
            inputs = [inputs[0].model_copy(update={"shape": [-1, *inputs[0].shape[1:]]})]
        return Signature(kind=kind, inputs=inputs, outputs=outputs, example_type="onnx")
