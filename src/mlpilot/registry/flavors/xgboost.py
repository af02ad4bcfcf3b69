"""XGBoost boosters and scikit-learn wrappers, saved in XGBoost's native JSON format (no code on load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mlpilot.errors import ArtifactError, InvalidInputError
from mlpilot.registry.flavors.base import Flavor, Handle, defined_in, import_library

__all__ = ["XGBoostFlavor"]

_FILE = "model.json"
# The classes a model may be rebuilt as: a fixed table, never a name read from the archive and imported.
_WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")


def _xgb() -> Any:
    return import_library("xgboost", "xgboost", "xgboost")


def _booster_handle(booster: Any) -> Handle:
    xgb = _xgb()

    def predict(data: Any) -> Any:
        # enable_categorical lets pandas category columns through, as they were at training time
        return booster.predict(xgb.DMatrix(data, enable_categorical=True))

    return Handle(predict=predict, raw=booster)


class XGBoostFlavor(Flavor):
    name = "xgboost"
    extra = "xgboost"
    distributions: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("xgboost", "xgboost-cpu"),
        ("numpy",),
        ("scipy",),
    )

    def matches(self, model: object) -> bool:
        return defined_in(model, "xgboost")

    @staticmethod
    def _kind(model: Any) -> str:
        for cls in type(model).__mro__:
            if cls.__module__.startswith("xgboost") and cls.__name__ in (*_WRAPPERS, "Booster"):
                return cls.__name__
        raise InvalidInputError(
            f"model: {type(model).__name__} is neither an xgboost Booster nor one of {', '.join(_WRAPPERS)}",
            field="model",
        )

    def wrap(self, model: Any) -> Handle:
        if self._kind(model) == "Booster":
            return _booster_handle(model)
        proba = model.predict_proba if hasattr(model, "predict_proba") else None
        return Handle(predict=model.predict, predict_proba=proba, raw=model)

    def save(self, model: Any, folder: Path, example: Any | None) -> dict[str, Any]:
        kind = self._kind(model)
        try:
            model.save_model(str(folder / _FILE))
        except Exception as exc:
            raise InvalidInputError(f"model: xgboost cannot save this model: {exc}", field="model") from exc
        return {"file": _FILE, "class": kind}

    def load(self, folder: Path, meta: dict[str, Any]) -> Handle:
        xgb = _xgb()
        kind = meta.get("class")
        if kind != "Booster" and kind not in _WRAPPERS:
            raise ArtifactError(f"xgboost model metadata names an unknown class {kind!r}")
        try:
            model = xgb.Booster() if kind == "Booster" else getattr(xgb, kind)()
            model.load_model(str(folder / _FILE))
        except xgb.core.XGBoostError as exc:
            raise ArtifactError(f"cannot load the xgboost model: {exc}") from exc
        return self.wrap(model)
