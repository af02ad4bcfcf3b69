"""The demo's feature store: churn features declared in a ``features.py`` over Parquet files, registered,
joined point-in-time into a training set, materialized online, and fed with fresh customers by push.

The project lands in ``$MLPILOT_HOME/demo/features`` so that every ``mlpilot features`` command works on it
afterwards (``mlpilot features plan -f …/features.py``, ``mlpilot features parity -f … --log …``).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpilot.demo.data import CATEGORICAL, FEATURES, NUMERIC, PROFILE, TARGET, FeatureTables, feature_tables
from mlpilot.demo.state import SERVICE, DemoState

__all__ = ["DEFINITIONS", "DemoFeatures", "step_features", "write_project"]

#: The definitions file the demo writes next to its data (paths are relative to it).
DEFINITIONS = '''"""Churn features of the mlpilot demo (written by `mlpilot demo`).

Review and register changes with `mlpilot features plan -f features.py` and `mlpilot features apply -f
features.py`; check training/serving skew with `mlpilot features parity -f features.py --log … -s churn`.
"""

from mlpilot.features import Entity, Feature, FeatureService, FeatureView, ParquetSource

customer = Entity("customer", join_keys=["customer_id"], description="a subscriber")

# Who the customer is: known at sign-up.
churn_profile = FeatureView(
    "churn_profile",
    entities=[customer],
    source=ParquetSource(["data/churn_profile/*.parquet", "pushed/churn_profile/*.parquet"]),
    timestamp_field="signup_time",
    features=[{profile}],
    description="region, plan and contract at sign-up",
)

# How the customer uses the service: snapshots that land in the warehouse hours later, and are sometimes
# corrected weeks later. `loaded_at` makes the join bitemporal: a row is used only once it was loaded.
churn_usage = FeatureView(
    "churn_usage",
    entities=[customer],
    source=ParquetSource(["data/churn_usage/*.parquet", "pushed/churn_usage/*.parquet"]),
    timestamp_field="snapshot_time",
    available_at_field="loaded_at",
    features=[{usage}],
    description="usage snapshot: tenure, charges, support calls, usage, payment delays, products",
)

# What the churn model consumes, at training time and at serving time.
churn = FeatureService("churn", [churn_usage, churn_profile], description="inputs of the churn model")
'''


def _feature_list(names: list[str], dtype: str) -> str:
    return ", ".join(f'Feature("{n}", "{dtype}")' for n in names)


@dataclass
class DemoFeatures:
    """The demo's feature project: its folder, loaded definitions, registry version and online store."""

    folder: Path
    definitions: Any
    online_url: str
    registry_version: int

    @property
    def file(self) -> Path:
        return self.folder / "features.py"

    @property
    def pushed(self) -> Path:
        return self.folder / "pushed"

    @property
    def service(self) -> Any:
        return self.definitions.service(SERVICE)

    def push_customers(self, frame: Any) -> int:
        """Push new customers' profile and usage rows: online now, and to the offline log the views read."""
        from mlpilot.features import push

        profile = frame[["customer_id", "signup_time", *PROFILE]]
        usage = frame[["customer_id", *NUMERIC]].assign(snapshot_time=frame["signup_time"])
        rows = 0
        for view, table in (("churn_profile", profile), ("churn_usage", usage)):
            result = push(view, table, store=self.online_url, offline_log=self.pushed, definitions=self.definitions)
            rows += result.online_rows
        return rows


def write_project(folder: Path, tables: FeatureTables) -> Path:
    """Write the Parquet files and ``features.py`` into ``folder`` (replacing an earlier demo's, but keeping the
    log of its pushes); returns the definitions file."""
    data = folder / "data"
    if data.exists():
        shutil.rmtree(data)  # the demo owns this folder: a re-run starts from the same history
    # pushed/ is the offline log of earlier runs' pushes: kept, as the online store still serves those rows.
    for view, frame in (("churn_profile", tables.profile), ("churn_usage", tables.usage)):
        out = data / view
        out.mkdir(parents=True)
        times = {
            c: frame[c].astype("datetime64[us]") for c in frame.columns if str(frame[c].dtype).startswith("datetime")
        }
        frame.assign(**times).to_parquet(out / "part-0.parquet", index=False)
    text = DEFINITIONS.replace("{profile}", _feature_list(CATEGORICAL, "string")).replace(
        "{usage}", _feature_list(NUMERIC, "float64")
    )
    file = folder / "features.py"
    file.write_text(text, encoding="utf-8")
    return file


def online_url(state: DemoState) -> str:
    from mlpilot.features.online import default_online_url

    settings = state.client.settings
    return settings.features_online_url or default_online_url(settings.home)


def step_features(state: DemoState) -> None:
    from mlpilot.features import get_training_set, load_definitions, materialize
    from mlpilot.features.planning import apply_definitions

    console = state.console
    tables: FeatureTables = feature_tables(state.data["customers"], seed=state.seed)
    state.data["tables"] = tables
    folder = state.client.settings.home.resolve() / "demo" / "features"
    file = write_project(folder, tables)
    definitions = load_definitions(file)
    console.print(
        f"wrote [bold]{file}[/bold]: entity customer, views churn_profile ({len(tables.profile):,} rows) and "
        f"churn_usage ({len(tables.usage):,} rows, {len(tables.corrected):,} of them late corrections), "
        f"service {SERVICE}"
    )
    # Validate and diff against what is registered, then register the whole set atomically (one version).
    changes = apply_definitions(state.client.features, definitions, actor="demo")
    version = state.client.features.load_specs().version
    summary = changes.render().replace("\n", ", ") if changes.has_changes else "no changes"
    console.print(f"plan: {summary}; applied as feature registry version {version} (audited)")

    started = time.perf_counter()
    training = get_training_set(tables.labels, definitions.service(SERVICE), definitions=definitions, output="pandas")
    took = time.perf_counter() - started
    report = training.report
    frame = training.data.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    console.print(
        f"point-in-time training set: {len(frame):,} labelled customers x {len(FEATURES)} features, each as known "
        f"the day the model scores the customer ({took * 1000:.0f} ms)"
    )
    usage = report.views["churn_usage"]
    console.print(
        f"  leakage report: {usage.matched:,} usage rows matched; [bold]{report.excluded_by_availability:,}[/bold] "
        f"corrections loaded after their customer's scoring time excluded (bitemporal join); "
        f"{report.equal_timestamp} at equal timestamps, {report.ttl_expired} expired"
    )
    console.print(
        "  a join on event time alone would have trained those rows on support tickets filed after the "
        "prediction: label leakage that looks great offline and fails online"
    )
    cut = int(len(frame) * 0.8)  # train on the past, evaluate on the most recent customers
    state.data["training_set"] = training
    state.data["train"], state.data["test"] = frame.iloc[:cut], frame.iloc[cut:]
    console.print(
        f"  churn rate {frame[TARGET].mean():.1%}; train {cut:,} / test {len(frame) - cut:,} split by scoring time"
    )

    url = online_url(state)
    started = time.perf_counter()
    results = materialize(list(definitions.views.values()), store=url, definitions=definitions)
    took = time.perf_counter() - started
    written = ", ".join(f"{r.view} {r.rows_written:,}" for r in results)
    console.print(f"materialized the latest value per customer online ({written} rows, {took:.1f} s): {url}")
    state.features = DemoFeatures(folder, definitions, url, version)
