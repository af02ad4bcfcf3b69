"""LightGBM boosters and scikit-learn wrappers, saved in LightGBM's native text format (no code on load).

The text format holds the booster only, so a classifier's labels are kept in our metadata and predictions are
rebuilt exactly as ``LGBMClassifier`` does: probabilities from the booster, labels by arg-max over them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlpilot.errors import ArtifactError, InvalidInputError
from mlpilot.registry.flavors.base import Flavor, Handle, defined_in, import_library

__all__ = ["LightGBMFlavor"]

_FILE = "model.txt"


def _lgb() -> Any:
    return import_library("lightgbm", "lightgbm", "lightgbm")


def _classifier_handle(booster: Any, classes: np.ndarray[Any, Any]) -> Handle:
    def predict_proba(data: Any) -> Any:
        proba = np.asarray(booster.predict(data))
        return np.vstack((1.0 - proba, proba)).transpose() if proba.ndim == 1 else proba

    def predict(data: Any) -> Any:
        return classes[np.argmax(predict_proba(data), axis=1)]

    return Handle(predict=predict, predict_proba=predict_proba, raw=booster)


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    extra = "lightgbm"
    distributions: ClassVar[tuple[tuple[str, ...], ...]] = (("lightgbm",), ("numpy",), ("scipy",))

    def matches(self, model: object) -> bool:
        return defined_in(model, "lightgbm")

    @staticmethod
    def _booster(model: Any) -> Any:
        booster = getattr(model, "booster_", None) if hasattr(model, "fit") else model
        if booster is None or not callable(getattr(booster, "save_model", None)):
            raise InvalidInputError("model: the LightGBM model is not fitted", field="model")
        return booster

    def wrap(self, model: Any) -> Handle:
        if hasattr(model, "fit"):  # the scikit-learn wrappers
            proba = model.predict_proba if hasattr(model, "predict_proba") else None
            return Handle(predict=model.predict, predict_proba=proba, raw=model)
        return Handle(predict=model.predict, raw=model)

    def save(self, model: Any, folder: Path, example: Any | None) -> dict[str, Any]:
        booster = self._booster(model)
        booster.save_model(str(folder / _FILE))
        meta: dict[str, Any] = {"file": _FILE, "kind": "booster"}
        if hasattr(model, "fit"):
            classes = getattr(model, "classes_", None) if hasattr(model, "predict_proba") else None
            meta["kind"] = "classifier" if classes is not None else "regressor"
            if classes is not None:
                classes = np.asarray(classes)
                if classes.dtype.kind not in "biufUO":
                    raise InvalidInputError(f"model: class labels of dtype {classes.dtype} are not supported")
                meta["classes"] = classes.tolist()
                meta["classes_dtype"] = "object" if classes.dtype.kind in "UO" else str(classes.dtype)
        return meta

    def load(self, folder: Path, meta: dict[str, Any]) -> Handle:
        lgb = _lgb()
        try:
            booster = lgb.Booster(model_file=str(folder / _FILE))
        except lgb.basic.LightGBMError as exc:
            raise ArtifactError(f"cannot load the LightGBM model: {exc}") from exc
        if meta.get("kind") == "classifier":
            classes = np.asarray(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))
            return _classifier_handle(booster, classes)
        return Handle(predict=booster.predict, raw=booster)
