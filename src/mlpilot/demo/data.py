"""A realistic customer-churn table with segments, for the demo and the tests.

Churn depends on tenure, charges, support calls, usage and contract, with segment effects: customers on the
``basic`` plan in ``EU`` churn more when charges rise. ``shift`` moves inputs for one segment so that later
demo steps can show drift and an accuracy drop where it happens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CATEGORICAL", "FEATURES", "NUMERIC", "TARGET", "make_churn"]

REGIONS = ("NA", "EU", "APAC", "LATAM")
PLANS = ("basic", "pro", "enterprise")
CONTRACTS = ("monthly", "one_year", "two_year")
NUMERIC = [
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "usage_hours",
    "payment_delay_days",
    "num_products",
]
CATEGORICAL = ["region", "plan", "contract"]
FEATURES = NUMERIC + CATEGORICAL
TARGET = "churned"


def make_churn(n: int = 20_000, *, seed: int = 0, shift: dict[str, Any] | None = None) -> Any:
    """A pandas DataFrame of ``n`` customers with ``customer_id``, the features, ``signup_time`` and ``churned``.

    ``shift={"region": "EU", "plan": "basic", "monthly_charges": 25.0}`` adds 25 to the charges of that segment
    (and the churn that follows from it), for drift demonstrations; ``"churn_boost": 1.5`` adds to that
    segment's log-odds of churning (a competitor's offer the model never saw), so its accuracy falls.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, size=n, p=[0.4, 0.3, 0.2, 0.1])
    plan = rng.choice(PLANS, size=n, p=[0.5, 0.35, 0.15])
    contract = rng.choice(CONTRACTS, size=n, p=[0.55, 0.25, 0.2])
    tenure = rng.gamma(2.0, 12.0, size=n).clip(0, 120).round(0)
    base_charge = np.select([plan == "basic", plan == "pro"], [30.0, 65.0], 110.0)
    charges = (base_charge + rng.normal(0, 8, size=n)).clip(5, None).round(2)
    support = rng.poisson(np.where(plan == "basic", 1.6, 1.0), size=n).astype(float)
    usage = rng.lognormal(3.0, 0.6, size=n).round(1)
    delay = rng.exponential(3.0, size=n).round(0)
    products = rng.integers(1, 5, size=n).astype(float)
    if shift:
        mask = np.ones(n, dtype=bool)
        for key in ("region", "plan", "contract"):
            if key in shift:
                mask &= {"region": region, "plan": plan, "contract": contract}[key] == shift[key]
        if "monthly_charges" in shift:
            charges = np.where(mask, charges + float(shift["monthly_charges"]), charges)
        if "support_calls" in shift:
            support = np.where(mask, support + float(shift["support_calls"]), support)
    logit = (
        -1.2
        - 0.045 * tenure
        + 0.022 * (charges - base_charge)
        + 0.35 * support
        - 0.012 * usage
        + 0.09 * delay
        - 0.15 * products
        + np.select([contract == "monthly", contract == "one_year"], [0.9, -0.2], -1.0)
        + np.where((region == "EU") & (plan == "basic"), 0.04 * (charges - 30.0), 0.0)
        + np.where(region == "LATAM", 0.3, 0.0)
    )
    if shift and "churn_boost" in shift:
        logit = np.where(mask, logit + float(shift["churn_boost"]), logit)
    churned = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    start = np.datetime64("2025-01-01T00:00:00")
    signup = start + rng.integers(0, 365 * 24 * 3600, size=n).astype("timedelta64[s]")
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype=np.int64) + seed * 1_000_000,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": support,
            "usage_hours": usage,
            "payment_delay_days": delay,
            "num_products": products,
            "region": region,
            "plan": plan,
            "contract": contract,
            "signup_time": signup,
            TARGET: churned,
        }
    )
