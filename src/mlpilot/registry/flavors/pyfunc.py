"""Plain Python models: a callable, or any object with ``predict`` (and optionally ``predict_proba``).

There is no code-free format for arbitrary Python, so these are pickled (with cloudpickle when installed,
which also captures lambdas and classes defined in ``__main__``). Unpickling runs code: a pyfunc model is only
ever unpickled from an archive whose SHA-256 matched the digest recorded in our registry, and ``load_model``
refuses pyfunc models altogether when called with ``allow_pickle=False``. Load pyfunc models only from
registries whose writers you trust.
"""

from __future__ import annotations

import importlib
import pickle
import platform
from pathlib import Path
from typing import Any, ClassVar

from mlpilot.errors import ArtifactError, InvalidInputError
from mlpilot.registry.flavors.base import Flavor, Handle, import_library

__all__ = ["PyfuncFlavor"]

_FILE = "model.pkl"


def _serializer() -> tuple[str, Any]:
    try:
        return "cloudpickle", importlib.import_module("cloudpickle")
    except ImportError:
        return "pickle", pickle


class PyfuncFlavor(Flavor):
    name = "pyfunc"
    extra = "pyfunc"
    distributions: ClassVar[tuple[tuple[str, ...], ...]] = (("cloudpickle",), ("numpy",))

    def matches(self, model: object) -> bool:
        return callable(getattr(model, "predict", None)) or callable(model)

    def wrap(self, model: Any) -> Handle:
        predict = getattr(model, "predict", None)
        if not callable(predict):
            if not callable(model):
                raise InvalidInputError("model: expected a callable or an object with predict()", field="model")
            predict = model
        proba = getattr(model, "predict_proba", None)
        return Handle(predict=predict, predict_proba=proba if callable(proba) else None, raw=model)

    def save(self, model: Any, folder: Path, example: Any | None) -> dict[str, Any]:
        self.wrap(model)  # refuse what could not predict before writing anything
        name, module = _serializer()
        try:
            data = module.dumps(model, protocol=5)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"model: cannot pickle it with {name}: {exc}", field="model") from exc
        (folder / _FILE).write_bytes(data)
        return {"file": _FILE, "serializer": name, "python": platform.python_version()}

    def load(self, folder: Path, meta: dict[str, Any]) -> Handle:
        if meta.get("serializer") == "cloudpickle":
            import_library("cloudpickle", "cloudpickle", "pyfunc")  # its pickles reference cloudpickle functions
        try:
            model = pickle.loads((folder / _FILE).read_bytes())  # noqa: S301 - hash-verified archive, see module doc
        except Exception as exc:  # unpickling can raise anything the pickled code raises
            raise ArtifactError(
                f"cannot unpickle the model (pickled with Python {meta.get('python', '?')}): {exc}"
            ) from exc
        return self.wrap(model)
