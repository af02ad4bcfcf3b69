"""A realistic customer-churn table with segments, for the demo and the tests.

Churn depends on tenure, charges, support calls, usage and contract, with segment effects: customers on the
``basic`` plan in ``EU`` churn more when charges rise. ``shift`` moves inputs for one segment so that later
demo steps can show drift and an accuracy drop where it happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CATEGORICAL",
    "FEATURES",
    "NEW_PLAN",
    "NUMERIC",
    "TARGET",
    "FeatureTables",
    "feature_tables",
    "make_churn",
    "with_new_plan",
]

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
#: A cheaper plan launched after the last retraining: no model was trained on it, and no holdout holds it.
NEW_PLAN = "starter"


def make_churn(
    n: int = 20_000,
    *,
    seed: int = 0,
    shift: dict[str, Any] | None = None,
    start: Any = None,
    span_days: int = 365,
) -> Any:
    """A pandas DataFrame of ``n`` customers with ``customer_id``, the features, ``signup_time`` and ``churned``.

    Customers sign up over ``span_days`` days from ``start`` (a ``numpy.datetime64``, default 2025-01-01).

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
    first = np.datetime64("2025-01-01T00:00:00") if start is None else np.datetime64(start, "s")
    signup = first + rng.integers(0, span_days * 24 * 3600, size=n).astype("timedelta64[s]")
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


def with_new_plan(frame: Any, share: float, *, seed: int = 0) -> Any:
    """A copy of ``frame`` where ``share`` of the customers took the :data:`NEW_PLAN` (40% cheaper)."""
    rng = np.random.default_rng(seed)
    moved = rng.random(len(frame)) < share
    out = frame.copy()
    out.loc[moved, "plan"] = NEW_PLAN
    out.loc[moved, "monthly_charges"] = (out.loc[moved, "monthly_charges"] * 0.6).round(2)
    return out


#: When a customer's usage snapshot lands in the warehouse, and when the model scores the customer.
LOAD_DELAY = np.timedelta64(6, "h")
PREDICTION_DELAY = np.timedelta64(1, "D")
#: Corrections are backfilled this long after the prediction they would have leaked into.
CORRECTION_DELAY = np.timedelta64(30, "D")
PROFILE = ["region", "plan", "contract"]


@dataclass(frozen=True)
class FeatureTables:
    """The churn data as a feature store sees it.

    ``profile``: one row per customer at sign-up (``customer_id``, ``signup_time``, region, plan, contract).
    ``usage``: usage snapshots (``snapshot_time``, loaded into the warehouse at ``loaded_at``), including
    late corrections. ``labels``: one row per customer with the time the model scores them
    (``event_timestamp``) and whether they churned afterwards. ``corrected`` holds the ids whose snapshot was
    corrected after that time, with ``original`` their values as first loaded.
    """

    profile: Any
    usage: Any
    labels: Any
    corrected: Any
    original: Any


def feature_tables(frame: Any, *, seed: int = 0, correction_rate: float = 0.04) -> FeatureTables:
    """Split a :func:`make_churn` frame into feature-store tables, planting late corrections.

    Each customer's usage snapshot is taken at sign-up and loaded six hours later; the model scores the
    customer a day after sign-up. For ``correction_rate`` of the customers the support-ticket system is
    backfilled a month later: a corrected snapshot (same ``snapshot_time``, a much later ``loaded_at``) adds
    the tickets filed around the churn itself, information no model could have had at scoring time. A join
    on event time alone would train on it; the bitemporal join excludes it and counts it.
    """
    import pandas as pd

    rng = np.random.default_rng(seed + 11)
    signup = frame["signup_time"].to_numpy()
    profile = frame[["customer_id", "signup_time", *PROFILE]].reset_index(drop=True)
    usage = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "snapshot_time": signup,
            "loaded_at": signup + LOAD_DELAY,
            **{c: frame[c].to_numpy() for c in NUMERIC},
        }
    )
    picked = rng.random(len(frame)) < correction_rate
    churned = frame[TARGET].to_numpy()[picked]
    fix = usage[picked].copy()
    fix["loaded_at"] = signup[picked] + PREDICTION_DELAY + CORRECTION_DELAY
    fix["support_calls"] = fix["support_calls"] + np.where(churned == 1, 2 + rng.poisson(2.0, len(fix)), 0)
    labels = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "event_timestamp": signup + PREDICTION_DELAY,
            TARGET: frame[TARGET].to_numpy(),
        }
    )
    return FeatureTables(
        profile=profile,
        usage=pd.concat([usage, fix], ignore_index=True),
        labels=labels,
        corrected=fix["customer_id"].to_numpy(),
        original=usage[picked].set_index("customer_id"),
    )
