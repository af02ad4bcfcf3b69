"""mlpilot.features: feature definitions, leak-free training sets, and an online store.

    >>> from datetime import timedelta
    >>> from mlpilot import features as mf
    >>> customer = mf.Entity("customer", join_keys=["customer_id"])
    >>> txn = mf.FeatureView(
    ...     "txn_stats", [customer], mf.ParquetSource("data/txn/*.parquet"), timestamp_field="event_time",
    ...     ttl=timedelta(days=7), features=[mf.Feature("amount_7d", "float64")],
    ... )
    >>> ts = mf.get_training_set(entity_df, [txn])                      # doctest: +SKIP
    >>> with mf.open_online_store("sqlite:///online.db") as store:      # doctest: +SKIP
    ...     mf.materialize([txn], store=store)
    ...     mf.get_online_features([{"customer_id": 42}], [txn], store=store)

Importing this package is cheap: DuckDB, pyarrow and the online-store clients load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlpilot.features.catalog import Definitions, Selection, resolve_features
    from mlpilot.features.definitions import Entity, Feature, FeatureRef, FeatureService, FeatureView
    from mlpilot.features.inference import infer_features, view_from_frame
    from mlpilot.features.leakage import LeakageReport, ViewLeakage
    from mlpilot.features.loader import load_definitions
    from mlpilot.features.lookup import OnlineReader, get_online_features
    from mlpilot.features.lookup_log import LookupLog
    from mlpilot.features.materialization import MaterializeResult, materialize
    from mlpilot.features.online import OnlineStore, PayloadReader, StoredRow, open_online_store
    from mlpilot.features.parity import Mismatch, ParityReport, parity
    from mlpilot.features.planning import Change, Plan, apply_definitions, plan
    from mlpilot.features.push_api import PushResult, push
    from mlpilot.features.registry import FeatureRegistryBackend, LocalJsonRegistry, RegisteredSpecs
    from mlpilot.features.rest import RestFeatureStore
    from mlpilot.features.service import FeatureStoreBackend, FeatureStoreService, OnlineResult
    from mlpilot.features.serving import FeatureLookup
    from mlpilot.features.sources import ParquetSource, Source, SqlSource, TableSource
    from mlpilot.features.store_registry import RegistryVersion, StoreFeatureRegistry
    from mlpilot.features.training import TrainingSet, get_training_set
    from mlpilot.features.validate import validate_definitions

__all__ = [
    "Change",
    "Definitions",
    "Entity",
    "Feature",
    "FeatureLookup",
    "FeatureRef",
    "FeatureRegistryBackend",
    "FeatureService",
    "FeatureStoreBackend",
    "FeatureStoreService",
    "FeatureView",
    "LeakageReport",
    "LocalJsonRegistry",
    "LookupLog",
    "MaterializeResult",
    "Mismatch",
    "OnlineReader",
    "OnlineResult",
    "OnlineStore",
    "ParityReport",
    "ParquetSource",
    "PayloadReader",
    "Plan",
    "PushResult",
    "RegisteredSpecs",
    "RegistryVersion",
    "RestFeatureStore",
    "Selection",
    "Source",
    "SqlSource",
    "StoreFeatureRegistry",
    "StoredRow",
    "TableSource",
    "TrainingSet",
    "ViewLeakage",
    "apply_definitions",
    "get_online_features",
    "get_training_set",
    "infer_features",
    "load_definitions",
    "materialize",
    "open_online_store",
    "parity",
    "plan",
    "push",
    "resolve_features",
    "validate_definitions",
    "view_from_frame",
]

_HOMES = {
    "Definitions": "catalog",
    "Selection": "catalog",
    "resolve_features": "catalog",
    "Entity": "definitions",
    "Feature": "definitions",
    "FeatureRef": "definitions",
    "FeatureService": "definitions",
    "FeatureView": "definitions",
    "infer_features": "inference",
    "view_from_frame": "inference",
    "LeakageReport": "leakage",
    "ViewLeakage": "leakage",
    "load_definitions": "loader",
    "OnlineReader": "lookup",
    "get_online_features": "lookup",
    "LookupLog": "lookup_log",
    "Mismatch": "parity",
    "ParityReport": "parity",
    "parity": "parity",
    "MaterializeResult": "materialization",
    "materialize": "materialization",
    "OnlineStore": "online",
    "PayloadReader": "online",
    "StoredRow": "online",
    "open_online_store": "online",
    "Change": "planning",
    "Plan": "planning",
    "apply_definitions": "planning",
    "plan": "planning",
    "PushResult": "push_api",
    "push": "push_api",
    "FeatureRegistryBackend": "registry",
    "LocalJsonRegistry": "registry",
    "RegisteredSpecs": "registry",
    "RestFeatureStore": "rest",
    "FeatureStoreBackend": "service",
    "FeatureStoreService": "service",
    "OnlineResult": "service",
    "FeatureLookup": "serving",
    "ParquetSource": "sources",
    "Source": "sources",
    "SqlSource": "sources",
    "TableSource": "sources",
    "RegistryVersion": "store_registry",
    "StoreFeatureRegistry": "store_registry",
    "TrainingSet": "training",
    "get_training_set": "training",
    "validate_definitions": "validate",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mlpilot.features' has no attribute {name!r}")
    module = importlib.import_module(f"mlpilot.features.{home}")
    # Bind every public name of that module at once, so no later submodule import can shadow one of them.
    for public, where in _HOMES.items():
        if where == home:
            globals()[public] = getattr(module, public)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(__all__)
