"""Model: registered versions and aliases, test vs backtest metrics, evaluation figures, flags per day."""

from __future__ import annotations

import streamlit as st

from wikichurn.core.settings import tracking_uri
from wikichurn.dashboard import charts, common, data, registry

common.header("Model", "The churn model in the MLflow registry and what it flags.")
settings = common.settings()
prod, versions, error = common.production_version()
if not versions:
    common.empty(f"No registered model yet ({error}).", "No production model yet: run `wikichurn train`.")

st.subheader(f"Registered versions of `{settings.serving.model_name}`")
st.dataframe(registry.versions_table(versions), hide_index=True, key="versions")
if prod is None:
    common.empty(
        f"No version holds the alias @{settings.serving.model_alias}.",
        "No production model yet: run `wikichurn train` (or promote a version with `--force`).",
    )

a, b, c = st.columns(3)
a.metric(f"@{settings.serving.model_alias}", f"version {prod.version}")
b.metric("Test PR AUC", f"{prod.metrics.get('test_pr_auc', float('nan')):.3f}")
c.metric("Test ROC AUC", f"{prod.metrics.get('test_roc_auc', float('nan')):.3f}")

left, right = st.columns([2, 3])
with left:
    st.markdown(f"**Version {prod.version}: test and backtest metrics**")
    side = registry.metrics_side_by_side(prod, common.backtest(tracking_uri(settings) or "", prod.experiment_id))
    st.dataframe(
        side,
        hide_index=True,
        key="metrics",
        column_config={
            "test": st.column_config.NumberColumn(format="%.4f"),
            "backtest": st.column_config.NumberColumn(format="%.4f"),
        },
    )
    if side["backtest"].isna().all():
        st.caption("No backtest yet: run `wikichurn backtest` (walk-forward windows).")
    else:
        st.caption("Backtest: mean over the windows of the latest walk-forward backtest run.")
with right:
    scores, version, _ = common.production_scores()
    if scores is None or scores.empty:
        st.info("This version has scored nothing yet. Run `wikichurn score`.")
    else:
        common.chart(charts.flagged_per_day(data.flagged_per_day(scores), version or prod.version))

st.subheader(f"Evaluation of version {prod.version}")
if not prod.run_id:
    common.empty("This version has no run: no figures.", "Versions registered by `wikichurn train` carry their run.")
try:
    figures = common.figures(tracking_uri(settings) or "", prod.run_id)
except registry.RegistryUnavailable as exc:
    st.warning(str(exc))
    common.footer()
    st.stop()
if not figures:
    st.info(f"Run {prod.run_id} has no figures/*.png (the evaluate stage logs them).")
columns = st.columns(2)
for i, (name, png) in enumerate(figures.items()):
    columns[i % 2].image(png, caption=registry.FIGURES[name], width="stretch")
common.footer()
