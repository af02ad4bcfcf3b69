"""PyTorch modules, saved as a ``torch.export`` program (a graph of ATen operators, no Python code) with a
dynamic batch dimension.

``torch.export.load`` would fall back to full unpickling when a file does not load with ``weights_only=True``,
so we do not call it. We write the program's JSON and its tensors as separate files, and load them ourselves:
each tensor file with ``torch.load(weights_only=True)`` and no fallback, then hand the already-loaded tensors
to the graph deserialiser. A file that needs anything but tensors and plain containers is refused.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlpilot.errors import ArtifactError, InvalidInputError
from mlpilot.registry.flavors.base import Flavor, Handle, defined_in, import_library
from mlpilot.registry.inputs import is_dataframe

__all__ = ["TorchFlavor"]

_PROGRAM = "program.json"
_TENSOR_FILES = ("state_dict.pt", "constants.pt", "example_inputs.pt")


def _torch() -> Any:
    return import_library("torch", "torch", "torch")


def _to_tensors(data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    torch = _torch()
    if isinstance(data, Mapping):
        return (), {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}
    if is_dataframe(data):
        data = data.to_numpy()
    if isinstance(data, torch.Tensor):
        return (data,), {}
    return (torch.from_numpy(np.ascontiguousarray(np.asarray(data))),), {}


def _to_numpy(value: Any) -> Any:
    torch = _torch()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, Mapping):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_to_numpy(v) for v in value)
    return value


def _module_handle(module: Any, raw: Any) -> Handle:
    torch = _torch()

    def predict(data: Any) -> Any:
        args, kwargs = _to_tensors(data)
        with torch.no_grad():
            return _to_numpy(module(*args, **kwargs))

    return Handle(predict=predict, raw=raw)


class TorchFlavor(Flavor):
    name = "torch"
    extra = "torch"
    distributions: ClassVar[tuple[tuple[str, ...], ...]] = (("torch",), ("numpy",))

    def matches(self, model: object) -> bool:
        names = {f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}
        return defined_in(model, "torch") and bool(
            names & {"torch.nn.modules.module.Module", "torch.export.exported_program.ExportedProgram"}
        )

    @staticmethod
    def _is_program(model: Any) -> bool:
        return type(model).__name__ == "ExportedProgram"

    def wrap(self, model: Any) -> Handle:
        if self._is_program(model):
            return _module_handle(model.module(), model)
        model.eval()
        return _module_handle(model, model)

    def _export(self, model: Any, example: Any | None) -> Any:
        torch = _torch()
        if self._is_program(model):
            return model
        if example is None:
            raise InvalidInputError(
                "input_example: a PyTorch module is saved by tracing it with torch.export, which needs an example",
                field="input_example",
            )
        model.eval()
        args, kwargs = _to_tensors(example)
        batch = torch.export.Dim.DYNAMIC
        shapes: Any = {k: {0: batch} for k in kwargs} if kwargs else ({0: batch},)
        try:
            return torch.export.export(model, args, kwargs or None, dynamic_shapes=shapes)
        except Exception as exc:  # export reports unsupported Python constructs with many exception types
            raise InvalidInputError(f"model: torch.export cannot trace this module: {exc}", field="model") from exc

    def save(self, model: Any, folder: Path, example: Any | None) -> dict[str, Any]:
        from torch._export.serde.serialize import serialize

        program = self._export(model, example)
        artifact = serialize(program)
        (folder / _PROGRAM).write_bytes(artifact.exported_program)
        for name, blob in zip(
            _TENSOR_FILES, (artifact.state_dict, artifact.constants, artifact.example_inputs), strict=True
        ):
            (folder / name).write_bytes(blob)
        return {"format": "torch.export", "files": [_PROGRAM, *_TENSOR_FILES]}

    def load(self, folder: Path, meta: dict[str, Any]) -> Handle:
        torch = _torch()
        from torch._export.serde.serialize import SerializedArtifact, deserialize

        if meta.get("format") != "torch.export":
            raise ArtifactError(f"unknown PyTorch model format {meta.get('format')!r}")
        tensors = []
        for name in _TENSOR_FILES:
            try:
                tensors.append(torch.load(io.BytesIO((folder / name).read_bytes()), weights_only=True))
            except Exception as exc:  # the weights-only unpickler raises UnpicklingError and others
                raise ArtifactError(f"refusing {name}: it holds more than tensors ({exc})") from exc
        state_dict, constants, example_inputs = tensors
        try:
            program = deserialize(
                SerializedArtifact((folder / _PROGRAM).read_bytes(), state_dict, constants, example_inputs)
            )
        except Exception as exc:
            raise ArtifactError(f"cannot rebuild the exported PyTorch program: {exc}") from exc
        return _module_handle(program.module(), program)
