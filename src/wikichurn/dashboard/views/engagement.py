"""Engagement: DAU / WAU / MAU in views, active domains, concentration, weekday seasonality, top movers."""

from __future__ import annotations

import streamlit as st

from wikichurn.dashboard import charts, common, data

common.header(
    "Engagement", "Traffic of the whole lake, from the EDA tables (gold_kpis_*), computed from gold if missing."
)
reader = common.reader()
versions = common.table_versions(data.GOLD_DAILY, data.GOLD_KPIS_DAILY, data.GOLD_KPIS_WEEKLY, data.GOLD_KPIS_MONTHLY)
if versions[0] is None:
    common.empty(
        "No traffic yet: gold_daily_projectviews does not exist.",
        "Run `wikichurn ingest`, then `wikichurn pipeline run`.",
    )
daily, source, weekly, monthly, season, movers, movers_note = common.engagement(reader, reader.root, versions)
st.caption(f"Source: {source}")

complete = daily[~daily["incomplete"].astype(bool)] if "incomplete" in daily else daily
last = complete.iloc[-1] if len(complete) else daily.iloc[-1]
full_weeks = weekly[~weekly["partial"].astype(bool)] if weekly is not None else None
full_months = monthly[~monthly["partial"].astype(bool)] if monthly is not None else None
a, b, c, d = st.columns(4)
a.metric(f"DAU in views ({last['event_date']})", data.compact_count(int(last["total_views"])))
if full_weeks is not None and len(full_weeks):
    b.metric(
        f"WAU in views (week of {full_weeks.iloc[-1]['period_start']})",
        data.compact_count(int(full_weeks.iloc[-1]["views"])),
    )
else:
    b.metric("WAU in views", "no complete week")
if full_months is not None and len(full_months):
    c.metric(
        f"MAU in views ({full_months.iloc[-1]['period_start']:%Y-%m})",
        data.compact_count(int(full_months.iloc[-1]["views"])),
    )
else:
    c.metric("MAU in views", "no complete month")
d.metric("Active domains", f"{int(last['active_domains']):,}")

left, right = st.columns(2)
with left:
    common.chart(
        charts.time_series(
            daily,
            "event_date",
            "total_views",
            "Daily views, all domains (DAU in views)",
            "views per day (log scale)",
            log=True,
        )
    )
    if weekly is not None and len(weekly):
        common.chart(
            charts.time_series(
                weekly,
                "period_start",
                "views",
                "Weekly views (WAU in views; ISO weeks)",
                "views per week (log scale)",
                log=True,
                x_title="week starting (Monday)",
                mark="bar",
            )
        )
with right:
    common.chart(
        charts.time_series(
            daily, "event_date", "active_domains", "Active domains per day", "domains with views (count)"
        )
    )
    if monthly is not None and len(monthly):
        common.chart(
            charts.time_series(
                monthly,
                "period_start",
                "views",
                "Monthly views (MAU in views)",
                "views per month (log scale)",
                log=True,
                x_title="month",
                mark="bar",
            )
        )
left, right = st.columns(2)
with left:
    common.chart(
        charts.time_series(
            daily.dropna(subset=["hhi"]),
            "event_date",
            "hhi",
            "Concentration of views (HHI over domains)",
            "HHI (0 = spread out, 1 = one domain)",
        )
    )
with right:
    common.chart(
        charts.time_series(
            daily.dropna(subset=["diversity"]), "event_date", "diversity", "Diversity (1 - HHI)", "diversity (0-1)"
        )
    )
if season is not None and len(season):
    common.chart(charts.seasonality(season))
st.subheader("Top movers")
if movers is None:
    st.info(f"No movers yet: {movers_note or 'not enough data'}.")
else:
    st.caption(f"Largest absolute changes in weekly views, {movers_note}.")
    st.dataframe(
        movers,
        hide_index=True,
        column_config={
            "views_before": st.column_config.NumberColumn("views, week before", format="localized"),
            "views_last": st.column_config.NumberColumn("views, last week", format="localized"),
            "change": st.column_config.NumberColumn("change (views)", format="localized"),
            "change_pct": st.column_config.NumberColumn("change", format="percent"),
        },
        key="movers",
    )
common.footer()
