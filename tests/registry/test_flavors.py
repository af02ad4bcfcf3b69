"""Each flavor round-trips: predictions before logging equal predictions after loading, over NumPy, pandas
and Arrow inputs; the flavor is detected from the model object.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlpilot.artifacts import FsspecArtifactStore
from mlpilot.errors import ConflictError
from mlpilot.registry import Predictor, RegistryService, detect_flavor, get_flavor, load_model, log_model


@pytest.fixture
def registry(sqlite_registry: RegistryService) -> RegistryService:
    """Model formats do not depend on the metadata backend: SQLite only keeps this module fast."""
    return sqlite_registry


def _round_trip(
    model: Any, registry: RegistryService, artifacts: FsspecArtifactStore, example: Any, **kwargs: Any
) -> tuple[Any, Predictor]:
    version = log_model(model, "m", registry=registry, artifacts=artifacts, input_example=example, **kwargs)
    loaded = load_model(version.uri, registry, artifacts)
    return get_flavor(version.flavor).wrap(model), loaded


def test_sklearn_pipeline_with_column_transformer_on_pandas(
    registry: RegistryService, artifacts: FsspecArtifactStore, churn_frame: Any
) -> None:
    pytest.importorskip("skops")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, label = churn_frame
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["tenure", "spend"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=200)),
        ]
    ).fit(frame, label)
    before, after = _round_trip(pipeline, registry, artifacts, frame.head(5), training_data=frame)
    assert after.version_info is not None
    assert after.version_info.flavor == "sklearn"
    assert after.signature is not None
    assert after.signature.input_names == [
        "tenure",
        "spend",
        "plan",
        "region",
    ]
    assert np.array_equal(after.predict(frame), before.predict(frame))
    assert np.array_equal(after.predict_proba(frame), before.predict_proba(frame))
    # Arrow and shuffled columns reach the pipeline as the frame it was trained on
    assert np.array_equal(after.predict(pa.Table.from_pandas(frame, preserve_index=False)), pipeline.predict(frame))
    assert np.array_equal(after.predict(frame[["region", "plan", "spend", "tenure"]]), pipeline.predict(frame))
    assert any(r.startswith("scikit-learn==") for r in after.version_info.requirements)
    assert any(r.startswith("pandas==") for r in after.version_info.requirements)


def test_sklearn_on_numpy(registry: RegistryService, artifacts: FsspecArtifactStore, numeric_data: Any) -> None:
    pytest.importorskip("skops")
    from sklearn.ensemble import RandomForestRegressor

    x, y = numeric_data
    forest = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    before, after = _round_trip(forest, registry, artifacts, x[:5])
    assert np.array_equal(after.predict(x), before.predict(x))
    assert np.array_equal(after.predict(x.astype("float64").tolist()), before.predict(x))
    assert not after.has_proba
    with pytest.raises(ConflictError):
        after.predict_proba(x)


def test_xgboost_classifier_and_booster(
    registry: RegistryService, artifacts: FsspecArtifactStore, numeric_data: Any
) -> None:
    xgb = pytest.importorskip("xgboost")
    x, y = numeric_data
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    before, after = _round_trip(clf, registry, artifacts, x[:5])
    assert type(after.model).__name__ == "XGBClassifier"
    assert np.array_equal(after.predict(x), before.predict(x))
    assert np.array_equal(after.predict_proba(x), before.predict_proba(x))

    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(x, label=y.astype(float)), num_boost_round=4)
    before, after = _round_trip(booster, registry, artifacts, x[:5])
    assert np.array_equal(after.predict(x), before.predict(x))
    assert np.array_equal(after.predict(pa.table({f"c{i}": x[:, i] for i in range(4)})), before.predict(x))


def test_lightgbm_classifier_on_pandas_categories(
    registry: RegistryService, artifacts: FsspecArtifactStore, churn_frame: Any
) -> None:
    lgb = pytest.importorskip("lightgbm")
    frame, label = churn_frame
    frame = frame.drop(columns=["plan"])
    names = np.array(["stay", "churn"])[label]  # string class labels survive the round trip
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, min_child_samples=5, verbose=-1).fit(frame, names)
    before, after = _round_trip(clf, registry, artifacts, frame.head(5))
    assert np.array_equal(after.predict(frame), before.predict(frame))
    assert np.array_equal(after.predict_proba(frame), before.predict_proba(frame))
    assert set(after.predict(frame)) <= {"stay", "churn"}


def test_lightgbm_regressor(registry: RegistryService, artifacts: FsspecArtifactStore, numeric_data: Any) -> None:
    lgb = pytest.importorskip("lightgbm")
    x, y = numeric_data
    reg = lgb.LGBMRegressor(n_estimators=5, num_leaves=4, min_child_samples=5, verbose=-1).fit(x, y.astype(float))
    before, after = _round_trip(reg, registry, artifacts, x[:5])
    assert np.array_equal(after.predict(x), before.predict(x))
    assert not after.has_proba


def test_onnx_from_skl2onnx(registry: RegistryService, artifacts: FsspecArtifactStore, numeric_data: Any) -> None:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.ensemble import RandomForestClassifier

    x, y = numeric_data
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    onx = skl2onnx.to_onnx(forest, x[:1], options={"zipmap": False})
    before, after = _round_trip(onx, registry, artifacts, x[:5])
    assert after.version_info is not None
    assert after.version_info.flavor == "onnx"
    assert np.array_equal(after.predict(x), before.predict(x))
    assert np.array_equal(after.predict(x), forest.predict(x))
    assert np.array_equal(after.predict_proba(x), before.predict_proba(x))
    # float64 input is cast to the graph's float32
    assert np.array_equal(after.predict(x.astype("float64")), before.predict(x))


def test_onnx_without_example_reads_the_signature_from_the_graph(
    registry: RegistryService, artifacts: FsspecArtifactStore, numeric_data: Any
) -> None:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LinearRegression

    x, y = numeric_data
    onx = skl2onnx.to_onnx(LinearRegression().fit(x, y), x[:1])
    version = log_model(onx, "lin", registry=registry, artifacts=artifacts)
    assert version.signature is not None
    assert [(s.name, s.dtype, s.shape) for s in version.signature.inputs] == [("X", "float32", [-1, 4])]
    assert version.sample_sha256 is None
    assert load_model("lin/1", registry, artifacts).predict(x).shape == (len(x), 1)


class TwoTower:
    """A module with named inputs (built lazily so the test module imports without torch)."""

    @staticmethod
    def build() -> Any:
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.user = torch.nn.Linear(3, 4)
                self.item = torch.nn.Linear(2, 4)

            def forward(self, user: Any, item: Any) -> Any:
                return (self.user(user) * self.item(item)).sum(dim=1)

        torch.manual_seed(0)
        return Net()


def test_torch_module(registry: RegistryService, artifacts: FsspecArtifactStore, numeric_data: Any) -> None:
    torch = pytest.importorskip("torch")
    x, _ = numeric_data
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2), torch.nn.Softmax(dim=1))
    before, after = _round_trip(net, registry, artifacts, x[:5])
    assert after.version_info is not None
    assert after.version_info.flavor == "torch"
    np.testing.assert_allclose(after.predict(x), before.predict(x), rtol=1e-6)
    assert after.predict(x[:1]).shape == (1, 2)  # the batch dimension stayed dynamic
    np.testing.assert_allclose(after.predict(x.astype("float64")), before.predict(x), rtol=1e-6)


def test_torch_module_with_named_inputs(registry: RegistryService, artifacts: FsspecArtifactStore) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    batch = {
        "user": rng.normal(size=(6, 3)).astype("float32"),
        "item": rng.normal(size=(6, 2)).astype("float32"),
    }
    before, after = _round_trip(TwoTower.build(), registry, artifacts, {k: v[:3] for k, v in batch.items()})
    assert after.signature is not None
    assert after.signature.kind == "dict"
    np.testing.assert_allclose(after.predict(batch), before.predict(batch), rtol=1e-6)


def test_pyfunc_lambda_and_class(registry: RegistryService, artifacts: FsspecArtifactStore) -> None:
    x = np.arange(6.0).reshape(3, 2)
    before, after = _round_trip(lambda a: a.sum(axis=1), registry, artifacts, x)
    assert np.array_equal(after.predict(x), before.predict(x))
    before, after = _round_trip(ThresholdModel(2.5), registry, artifacts, x)
    assert np.array_equal(after.predict(x), np.array([0, 1, 1]))
    assert np.array_equal(after.predict_proba(x), before.predict_proba(x))


class ThresholdModel:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict_proba(self, x: Any) -> Any:
        p = (np.asarray(x).max(axis=1) > self.threshold).astype(float)
        return np.column_stack([1 - p, p])

    def predict(self, x: Any) -> Any:
        return self.predict_proba(x).argmax(axis=1)


def test_flavor_detection() -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LinearRegression

    cases: list[tuple[Any, str]] = [
        (LinearRegression(), "sklearn"),
        (ThresholdModel(1), "pyfunc"),
        (len, "pyfunc"),
    ]
    try:
        import xgboost

        cases += [(xgboost.XGBRegressor(), "xgboost"), (xgboost.Booster(), "xgboost")]
    except ImportError:
        pass
    try:
        import lightgbm

        cases.append((lightgbm.LGBMClassifier(), "lightgbm"))
    except ImportError:
        pass
    try:
        import onnx

        cases.append((onnx.ModelProto(), "onnx"))
    except ImportError:
        pass
    try:
        import torch

        cases.append((torch.nn.Linear(1, 1), "torch"))
    except ImportError:
        pass
    assert [(type(m).__name__, detect_flavor(m).name) for m, _ in cases] == [
        (type(m).__name__, name) for m, name in cases
    ]
