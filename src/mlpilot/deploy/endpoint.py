"""What an endpoint serves: the serving document the data plane follows, and the checks of an endpoint that
looks its inputs up from a feature service."""

from __future__ import annotations

from typing import Any

from mlpilot.deploy.entities import DeploymentInfo, EndpointFeatures, ServingDocument
from mlpilot.errors import InvalidInputError
from mlpilot.registry import Signature
from mlpilot.store import Store

__all__ = ["check_feature_service", "check_named_inputs", "serving_document"]


def serving_document(info: DeploymentInfo) -> ServingDocument:
    """The serving config of ``info``: primary first, then canaries, shadows and standbys; every version with
    the endpoint's feature service, when it has one."""
    order = {"primary": 0, "canary": 1, "shadow": 2, "standby": 3}
    variants = sorted(info.spec.variants, key=lambda v: (order[v.role], v.version))
    features = info.spec.features
    extra = {"features": features.model_dump(mode="json")} if features is not None else {}
    return ServingDocument(
        name=info.name,
        revision=info.revision,
        rollout=info.spec.rollout,
        etag=f'"{info.name}-{info.revision}"',
        model=info.spec.model,
        models=[{"ref": f"{info.spec.model}/{v.version}", "name": info.name, **extra} for v in variants],
        variants=variants,
        routing=info.spec.routing,
        state=info.spec.state,
        features=features,
    )


def check_named_inputs(features: EndpointFeatures, model: str, version: int, signature: Any, *, field: str) -> None:
    """A version served with a feature service takes named inputs (a DataFrame signature): the looked-up
    features and the request-time fields are matched to them by name."""
    if isinstance(signature, dict):  # a version row's column: {} when the version has no signature
        signature = Signature.model_validate(signature) if signature else None
    if signature is None or signature.kind == "ndarray":
        raise InvalidInputError(
            f"{field}: model {model!r} version {version} takes one unnamed tensor, so it cannot look its inputs up "
            f"from feature service {features.service!r}: log it with a DataFrame input example (column names = "
            "feature names)",
            field=field,
        )


def check_feature_service(store: Store, features: EndpointFeatures) -> None:
    """``features.service`` is a feature service registered in ``features.project``."""
    from mlpilot.features.store_registry import StoreFeatureRegistry

    registered = StoreFeatureRegistry(store, project=features.project).load_specs()
    services = sorted(str(s.get("name")) for s in registered.specs if s.get("kind") == "feature_service")
    if features.service not in services:
        known = f"known: {', '.join(services)}" if services else "none registered: run `mlpilot features apply`"
        raise InvalidInputError(
            f"features.service: feature registry project {features.project!r} has no feature service "
            f"{features.service!r} ({known})",
            field="features.service",
        )
