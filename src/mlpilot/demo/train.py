"""Model training for the demo: two churn classifiers on the same features, evaluated overall and by segment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpilot.demo.data import CATEGORICAL, FEATURES, NUMERIC, TARGET

__all__ = ["BROKEN_REGIONS", "Candidate", "evaluate", "make_broken", "make_candidates", "make_strict"]

#: The only regions the planted broken build (:func:`make_broken`) was fitted on.
BROKEN_REGIONS = ("NA", "EU")


@dataclass
class Candidate:
    """A model to train: its name, its hyper-parameters, and a factory building the unfitted estimator."""

    name: str
    params: dict[str, Any]
    build: Callable[[], Any]
    curve: list[tuple[int, float]] = field(default_factory=list)


def make_candidates(seed: int = 0) -> list[Candidate]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    logreg_params: dict[str, Any] = {"C": 0.5, "max_iter": 500}
    hgb_params: dict[str, Any] = {
        "max_iter": 150,
        "learning_rate": 0.08,
        "max_depth": 6,
        "random_state": seed,
    }

    def logreg() -> Any:
        pre = ColumnTransformer(
            [("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)]
        )
        return Pipeline([("pre", pre), ("clf", LogisticRegression(**logreg_params))])

    def hgb() -> Any:
        pre = ColumnTransformer(
            [
                ("num", "passthrough", NUMERIC),
                ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), CATEGORICAL),
            ]
        )
        n_num = len(NUMERIC)
        cat_mask = [False] * n_num + [True] * len(CATEGORICAL)
        clf = HistGradientBoostingClassifier(categorical_features=cat_mask, **hgb_params)
        return Pipeline([("pre", pre), ("clf", clf)])

    return [
        Candidate("logistic_regression", logreg_params, logreg),
        Candidate("gradient_boosting", hgb_params, hgb),
    ]


def make_broken(frame: Any) -> Any:
    """A deliberately broken build, fitted on the NA and EU export of ``frame`` only: its encoder refuses
    categories it never saw (``handle_unknown="error"``), so it raises on every APAC and LATAM customer.

    Planted for the demo's rollback step; everything else about it is a normal, reasonable model.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    seen = frame[frame["region"].isin(BROKEN_REGIONS)]
    pre = ColumnTransformer(
        [("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(handle_unknown="error"), CATEGORICAL)]
    )
    model = Pipeline([("pre", pre), ("clf", LogisticRegression(C=0.5, max_iter=500))])
    return model.fit(seen[FEATURES], seen[TARGET])


def make_strict(model: Any) -> Any:
    """A copy of a fitted churn pipeline (from :func:`make_candidates`) whose category encoder refuses
    categories it never saw (``handle_unknown="error"``) instead of encoding them as unknown.

    Planted for the demo's rollback step: on every category seen in training it encodes, and so predicts,
    exactly like ``model``; a new category makes it raise.
    """
    import copy

    strict = copy.deepcopy(model)
    encoder = strict.named_steps["pre"].named_transformers_["cat"]
    encoder.handle_unknown = "error"
    return strict


def evaluate(model: Any, frame: Any) -> dict[str, float]:
    """AUC, accuracy, log loss and F1 overall, and AUC per region."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    y = frame[TARGET].to_numpy()
    proba = model.predict_proba(frame[FEATURES])[:, 1]
    pred = (proba >= 0.5).astype(np.int64)
    out = {
        "auc": float(roc_auc_score(y, proba)),
        "accuracy": float(accuracy_score(y, pred)),
        "log_loss": float(log_loss(y, proba)),
        "f1": float(f1_score(y, pred, zero_division=0)),
    }
    for region in sorted(frame["region"].unique()):
        mask = (frame["region"] == region).to_numpy()
        if len(np.unique(y[mask])) == 2:
            out[f"auc_region_{region}"] = float(roc_auc_score(y[mask], proba[mask]))
    return out
