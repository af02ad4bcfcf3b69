"""The model registry: registered models, numbered versions, aliases, flavors, signatures and safe loading.

``RegistryService`` keeps models in the metadata store; ``log_model`` saves a model through its flavor into
one hash-addressed artifact and registers it; ``load_model`` verifies that artifact and returns a
``Predictor``.

>>> import tempfile, numpy as np
>>> from mlpilot.store import Store
>>> from mlpilot.artifacts import FsspecArtifactStore
>>> registry = RegistryService(Store("sqlite:///:memory:"))
>>> artifacts = FsspecArtifactStore(tempfile.mkdtemp())
>>> double = lambda x: x * 2
>>> v = log_model(double, "doubler", registry=registry, artifacts=artifacts, input_example=np.ones((2, 3)))
>>> registry.set_alias("doubler", "champion", v.version).alias
'champion'
>>> load_model("models:/doubler@champion", registry, artifacts).predict(np.ones((1, 3))).tolist()
[[2.0, 2.0, 2.0]]
"""

from __future__ import annotations

from mlpilot.registry.backend import RegistryBackend
from mlpilot.registry.entities import (
    AliasInfo,
    ModelEvent,
    ModelVersionInfo,
    NewModelVersion,
    RegisteredModelInfo,
)
from mlpilot.registry.flavors import FLAVORS, detect_flavor, get_flavor
from mlpilot.registry.log import log_model
from mlpilot.registry.predictor import Predictor, load_archive, load_model
from mlpilot.registry.sample import read_sample, sample_table
from mlpilot.registry.service import RegistryService
from mlpilot.registry.signature import Signature, TensorSpec, infer_signature
from mlpilot.registry.uri import ModelUri, parse_model_uri

__all__ = [
    "FLAVORS",
    "AliasInfo",
    "ModelEvent",
    "ModelUri",
    "ModelVersionInfo",
    "NewModelVersion",
    "Predictor",
    "RegisteredModelInfo",
    "RegistryBackend",
    "RegistryService",
    "Signature",
    "TensorSpec",
    "detect_flavor",
    "get_flavor",
    "infer_signature",
    "load_archive",
    "load_model",
    "log_model",
    "parse_model_uri",
    "read_sample",
    "sample_table",
]
