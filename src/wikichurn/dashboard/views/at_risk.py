"""At risk: the latest scored day's domains ranked by risk, filters, and one domain in detail."""

from __future__ import annotations

import streamlit as st

from wikichurn.dashboard import charts, common, data

HISTORY_DAYS = 90
RISK_WEEKS = 6
TOP_BARS = 20

common.header(
    "Domains at risk", "Risk that a domain's daily views collapse within the horizon, from gold_churn_scores."
)
settings = common.settings()
scores, version, registry_error = common.production_scores()
if scores is None or scores.empty:
    todo = (
        "No production model yet: run `wikichurn train`, then `wikichurn score`."
        if registry_error
        else "Run `wikichurn score` (or `wikichurn pipeline run`) to score the complete days."
    )
    if registry_error:
        st.caption(f"Registry: {registry_error}")
    common.empty("No risk scores yet: gold_churn_scores is empty.", todo)

reader = common.reader()
(gold_version,) = common.table_versions(data.GOLD_DAILY)
views = common.daily_views(reader, reader.root, gold_version)
days = sorted(scores["event_date"].unique())
day = days[-1]
ranked = data.ranked_day(scores, views, day)
threshold = float(ranked["threshold"].iloc[0])

with st.sidebar:
    st.header("Filters")
    families = st.multiselect("Project family", sorted(ranked["project_family"].unique()), key="family")
    access = st.multiselect("Access", sorted(ranked["access"].unique()), key="access")
    languages = st.multiselect("Language", sorted(ranked["language"].unique()), key="language")
    min_views = st.number_input("Minimum size (views that day)", min_value=0, value=0, step=100, key="min_views")
    only_flagged = st.checkbox("Only domains flagged as churn", key="only_flagged")
shown = data.filter_ranked(
    ranked, data.RiskFilter(tuple(families), tuple(access), tuple(languages), int(min_views), only_flagged)
)

left, mid, right, far = st.columns(4)
left.metric("Scored day", str(day))
mid.metric("Domains scored", f"{len(ranked):,}")
right.metric("Flagged (risk >= threshold)", f"{int(ranked['churn'].sum()):,}")
far.metric("Churn threshold", f"{threshold:.3f}", help=f"model version {version}: flagged when risk >= threshold")

if shown.empty:
    st.warning("No domain passes these filters.")
    common.footer()
    st.stop()

top = shown.iloc[0]
st.markdown(f"**Top at-risk domain:** `{top['domain_code']}` — risk **{top['risk_score']:.3f}**")
common.chart(charts.risk_ranking(shown.head(TOP_BARS), threshold, str(day)))
st.dataframe(
    shown[
        [
            "rank",
            "domain_code",
            "risk_score",
            "churn",
            "count_views",
            "project_family",
            "access",
            "language",
            "reason_1_feature",
        ]
    ],
    hide_index=True,
    height=280,
    column_config={
        "risk_score": st.column_config.ProgressColumn("risk score", min_value=0.0, max_value=1.0, format="%.3f"),
        "churn": st.column_config.CheckboxColumn("flagged"),
        "count_views": st.column_config.NumberColumn("views that day", format="localized"),
        "reason_1_feature": "top reason",
    },
    key="ranked_table",
)

st.subheader("One domain in detail")
domain = st.selectbox("Domain", shown["domain_code"].tolist(), index=0, key="domain")
row = shown[shown["domain_code"] == domain].iloc[0]
churn = settings.churn
if views is not None:
    history = data.view_history(views, domain, day, HISTORY_DAYS, churn.window_days, churn.factor)
    common.chart(charts.view_history(history, domain, churn.window_days, churn.factor))
col_a, col_b = st.columns([2, 3])
with col_a:
    st.markdown(f"**Why {domain} scores {row['risk_score']:.3f}** (top contributions, log-odds)")
    st.dataframe(data.reasons(row), hide_index=True, key="reasons")
with col_b:
    own = scores[scores["domain_code"] == domain].sort_values("event_date").tail(RISK_WEEKS * 7)
    common.chart(charts.risk_history(own, domain, threshold))
common.footer()
