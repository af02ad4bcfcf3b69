"""Model flavors, one module each; the table below is the one place that names them.

Detection tries them in order: the specific libraries first (XGBoost and LightGBM wrappers also look like
scikit-learn estimators), plain Python objects last.
"""

from __future__ import annotations

import importlib

from mlpilot.errors import InvalidInputError
from mlpilot.registry.flavors.base import Flavor, Handle

__all__ = ["FLAVORS", "Flavor", "Handle", "detect_flavor", "get_flavor"]

#: flavor name -> "module:class", in detection order
FLAVORS: dict[str, str] = {
    "onnx": "mlpilot.registry.flavors.onnx:OnnxFlavor",
    "torch": "mlpilot.registry.flavors.torch:TorchFlavor",
    "xgboost": "mlpilot.registry.flavors.xgboost:XGBoostFlavor",
    "lightgbm": "mlpilot.registry.flavors.lightgbm:LightGBMFlavor",
    "sklearn": "mlpilot.registry.flavors.sklearn:SklearnFlavor",
    "pyfunc": "mlpilot.registry.flavors.pyfunc:PyfuncFlavor",
}


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``.

    >>> get_flavor("sklearn").extra
    'sklearn'
    """
    target = FLAVORS.get(name)
    if target is None:
        raise InvalidInputError(f"flavor: expected one of {', '.join(FLAVORS)}, got {name!r}", field="flavor")
    module, _, cls = target.partition(":")
    flavor: Flavor = getattr(importlib.import_module(module), cls)()
    return flavor


def detect_flavor(model: object) -> Flavor:
    """The first flavor that recognises ``model``, or :class:`InvalidInputError` when none does."""
    for name in FLAVORS:
        flavor = get_flavor(name)
        if flavor.matches(model):
            return flavor
    raise InvalidInputError(
        f"model: cannot tell the flavor of a {type(model).__module__}.{type(model).__qualname__}; "
        "pass a callable, an object with predict(), or a model of a supported library",
        field="model",
    )
