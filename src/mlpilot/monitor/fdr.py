"""False-alarm control: Benjamini-Hochberg adjusted p-values (q-values).

A drift check runs one test per feature, per feature within each segment, for the prediction, for missing
rates and for the multivariate detector. All of them form one family; a test rejects when its q-value is at
most
``alpha``. Under no drift at all this bounds the chance of *any* alarm in a check by ``alpha`` (BH controls
the
family-wise rate under the complete null), and when some features drift it bounds the expected share of false
ones among the flagged at ``alpha``::

    >>> from mlpilot.monitor.fdr import benjamini_hochberg
    >>> [round(q, 3) for q in benjamini_hochberg([0.01, 0.04, 0.03, 0.5])]
    [0.04, 0.053, 0.053, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["benjamini_hochberg"]


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values, in input order (same as SciPy's
    ``false_discovery_control``)."""
    p = np.asarray(p_values, dtype=np.float64)
    n = p.size
    if n == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.clip(adjusted, 0.0, 1.0)
    return [float(v) for v in out]
