"""scikit-learn estimators and pipelines, saved in the skops format.

skops refuses to build any type it does not trust. At save time we record exactly the types skops would not
trust by default (for example a custom transformer); at load time, after the archive's hash is verified, we
pass that recorded list, and only that list, as ``trusted``, and refuse a file asking for anything beyond it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mlpilot.errors import ArtifactError, InvalidInputError
from mlpilot.registry.flavors.base import Flavor, Handle, defined_in, import_library

__all__ = ["SklearnFlavor"]

_FILE = "model.skops"


def _skops_io() -> Any:
    import_library("sklearn", "scikit-learn", "sklearn")
    return import_library("skops.io", "skops", "sklearn")


class SklearnFlavor(Flavor):
    name = "sklearn"
    extra = "sklearn"
    distributions: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("scikit-learn",),
        ("skops",),
        ("numpy",),
        ("scipy",),
    )

    def matches(self, model: object) -> bool:
        return defined_in(model, "sklearn") and callable(getattr(model, "predict", None))

    def wrap(self, model: Any) -> Handle:
        proba = model.predict_proba if hasattr(model, "predict_proba") else None
        return Handle(predict=model.predict, predict_proba=proba, raw=model)

    def save(self, model: Any, folder: Path, example: Any | None) -> dict[str, Any]:
        sio = _skops_io()
        path = folder / _FILE
        try:
            sio.dump(model, path)
            untrusted = sorted(sio.get_untrusted_types(file=path))
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"model: skops cannot save this estimator: {exc}", field="model") from exc
        return {"file": _FILE, "trusted_types": untrusted}

    def load(self, folder: Path, meta: dict[str, Any]) -> Handle:
        sio = _skops_io()
        path = folder / _FILE
        recorded = meta.get("trusted_types")
        if not isinstance(recorded, list) or not all(isinstance(t, str) for t in recorded):
            raise ArtifactError("sklearn model metadata has no list of trusted types: refusing to load")
        asked = set(sio.get_untrusted_types(file=path))
        beyond = sorted(asked - set(recorded))
        if beyond:
            raise ArtifactError(
                f"the skops file needs types that were not recorded when it was saved: {', '.join(beyond)}"
            )
        try:
            model = sio.load(path, trusted=sorted(asked))
        except Exception as exc:  # skops raises many kinds; none may escape as a bare library error
            raise ArtifactError(f"cannot load the scikit-learn model: {exc}") from exc
        return self.wrap(model)
