"""The dashboard's reads of the MLflow registry: versions, aliases, metrics and the evaluation figures.

Plain functions over ``MlflowClient`` (no Streamlit). The figures are the PNGs the ``evaluate``
stage logs on the tuned run (``figures/*.png``). Backtest metrics are the means over windows of the
latest walk-forward backtest run (``wikichurn backtest``: tag ``wikichurn.role = backtest``,
metrics ``mean_tuned_*``) in the version's experiment, or ``backtest_*`` metrics of the run itself.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

# figure file -> caption, in the order the page shows them.
FIGURES: dict[str, str] = {
    "roc_curve.png": "ROC curve (test set)",
    "pr_curve.png": "Precision-recall curve (test set), threshold marked",
    "calibration.png": "Calibration: predicted risk vs observed churn rate (test set)",
    "shap_beeswarm.png": "SHAP summary: per-feature contributions (log-odds)",
    "shap_importance.png": "SHAP importance: mean |contribution| per feature",
}
HEADLINE = ("pr_auc", "roc_auc", "f1_churn", "precision_churn", "recall_churn", "brier", "log_loss")


class RegistryUnavailable(RuntimeError):
    """No tracking URI, no registered model, or the server does not answer."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    created: datetime
    metrics: dict[str, float]
    tags: dict[str, str]
    experiment_id: str | None = None


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def model_versions(tracking_uri: str | None, name: str) -> list[VersionInfo]:
    """Every registered version of ``name``, newest first, with its run's metrics.

    Raises:
        RegistryUnavailable: no tracking URI, the registry cannot be reached, or no version exists.
    """
    if not tracking_uri:
        raise RegistryUnavailable("no MLflow tracking URI configured (set MLFLOW_TRACKING_URI)")
    try:
        client = _client(tracking_uri)
        versions = client.search_model_versions(f"name = '{name}'")
        # search_model_versions leaves `aliases` empty on some stores: the registered model has them all.
        by_version: dict[str, list[str]] = {}
        if versions:
            for alias, number in (client.get_registered_model(name).aliases or {}).items():
                by_version.setdefault(str(number), []).append(alias)
    except Exception as exc:  # connection refused, unknown model, sqlite errors...
        raise RegistryUnavailable(f"cannot read the registry at {tracking_uri}: {type(exc).__name__}: {exc}") from exc
    if not versions:
        raise RegistryUnavailable(f"no version of model {name!r} is registered at {tracking_uri}")
    out = []
    for mv in versions:
        metrics: dict[str, float] = {}
        experiment_id = None
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
                metrics, experiment_id = dict(run.data.metrics), run.info.experiment_id
            except Exception as exc:  # a deleted run must not hide the others
                log.warning("run %s of version %s: %s", mv.run_id, mv.version, exc)
        out.append(
            VersionInfo(
                version=str(mv.version),
                aliases=tuple(sorted(set(mv.aliases or ()) | set(by_version.get(str(mv.version), ())))),
                run_id=mv.run_id,
                created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
                metrics=metrics,
                tags=dict(mv.tags or {}),
                experiment_id=experiment_id,
            )
        )
    return sorted(out, key=lambda v: int(v.version) if v.version.isdigit() else 0, reverse=True)


def production(versions: list[VersionInfo], alias: str) -> VersionInfo | None:
    """The version holding ``alias``."""
    return next((v for v in versions if alias in v.aliases), None)


def versions_table(versions: list[VersionInfo]) -> pd.DataFrame:
    """One row per version: aliases, registration time and the headline test metrics."""
    rows = []
    for v in versions:
        row: dict[str, Any] = {
            "version": v.version,
            "aliases": ", ".join(f"@{a}" for a in v.aliases) or "-",
            "registered (UTC)": v.created.strftime("%Y-%m-%d %H:%M"),
        }
        row.update({f"test {m}": v.metrics.get(f"test_{m}") for m in HEADLINE[:4]})
        row["promotion"] = v.tags.get("wikichurn.promotion_reason", "")[:120]
        rows.append(row)
    return pd.DataFrame(rows)


def latest_backtest(tracking_uri: str, experiment_id: str | None) -> dict[str, float]:
    """``{metric: value}`` of the latest finished backtest run of the experiment (``mean_tuned_*``)."""
    if not experiment_id:
        return {}
    try:
        runs = _client(tracking_uri).search_runs(
            [experiment_id],
            filter_string="tags.`wikichurn.role` = 'backtest' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except Exception as exc:  # an old server without the filter, a network error: no backtest column
        log.warning("cannot search backtest runs: %s", exc)
        return {}
    if not runs:
        return {}
    metrics = runs[0].data.metrics
    return {k.removeprefix("mean_tuned_"): v for k, v in metrics.items() if k.startswith("mean_tuned_")}


def metrics_side_by_side(version: VersionInfo, backtest: dict[str, float] | None = None) -> pd.DataFrame:
    """Test and backtest values of each headline metric of one version (None: not logged)."""
    backtest = {
        **(backtest or {}),
        **{m: version.metrics[f"backtest_{m}"] for m in HEADLINE if f"backtest_{m}" in version.metrics},
    }
    rows = [
        {"metric": m, "test": version.metrics.get(f"test_{m}"), "backtest": backtest.get(m)}
        for m in HEADLINE
        if f"test_{m}" in version.metrics or m in backtest
    ]
    return pd.DataFrame(rows, columns=["metric", "test", "backtest"])


def figures(tracking_uri: str, run_id: str) -> dict[str, bytes]:
    """The evaluation PNGs of ``run_id`` (file name -> bytes), those of :data:`FIGURES` that exist."""
    import mlflow

    client = _client(tracking_uri)
    try:
        listed = {Path(f.path).name for f in client.list_artifacts(run_id, "figures")}
    except Exception as exc:
        raise RegistryUnavailable(f"cannot list the artifacts of run {run_id}: {exc}") from exc
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="wikichurn-dashboard-") as tmp:
        for name in FIGURES:
            if name not in listed:
                continue
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"figures/{name}", dst_path=tmp, tracking_uri=tracking_uri
            )
            out[name] = Path(local).read_bytes()
    return out
