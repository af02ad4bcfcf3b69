"""A data plane told which deployments look their inputs up from a feature service serves their versions with
that service (callers send entity keys), and leaves the others alone."""

from __future__ import annotations

import pytest

from mlpilot.deploy import RoutingConfig, ServingDocument, Variant
from mlpilot.deploy.follower import serve_config_for
from mlpilot.serving import ServeConfig
from mlpilot.serving.config import FeaturesConfig


def _doc(name: str, model: str, versions: list[int]) -> ServingDocument:
    variants = [Variant(version=versions[0], role="primary", weight=100)]
    variants += [Variant(version=v, role="canary", weight=0) for v in versions[1:]]
    return ServingDocument(
        name=name,
        revision=1,
        rollout=0,
        etag=f'"{name}-1"',
        model=model,
        models=[{"ref": f"{model}/{v}", "name": name} for v in versions],
        variants=variants,
        routing=RoutingConfig(),
        state="stable",
    )


BASE = ServeConfig.from_refs(["placeholder/1"], refresh_interval=0)


def test_every_version_of_a_featured_deployment_gets_its_service() -> None:
    docs = [_doc("churn", "churn", [3, 4]), _doc("fraud", "fraud-model", [1])]
    online = FeaturesConfig(service="risk", online_url="sqlite:///:memory:")
    config = serve_config_for(BASE, docs, {"churn": "churn", "fraud": online, "not-served": "x"})
    by_ref = {m.ref: m.features for m in config.models}
    assert by_ref["churn/3"] == by_ref["churn/4"] == FeaturesConfig(service="churn")
    assert by_ref["fraud-model/1"] == online


@pytest.mark.parametrize("features", [None, {}, {"elsewhere": "churn"}])
def test_without_a_service_for_the_deployment_nothing_is_looked_up(features: dict[str, str] | None) -> None:
    config = serve_config_for(BASE, [_doc("churn", "churn", [3])], features)
    assert [(m.ref, m.name, m.features) for m in config.models] == [("churn/3", "churn", None)]
