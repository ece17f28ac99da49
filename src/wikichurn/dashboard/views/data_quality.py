"""Data quality: per pipeline run from silver_dq_reports, hourly completeness, missing hours, conservation."""

from __future__ import annotations

import streamlit as st

from wikichurn.dashboard import charts, common, data

common.header(
    "Data quality", "What each pipeline run took in, kept and quarantined, and which hourly files are missing."
)
reader = common.reader()
versions = common.table_versions(
    data.SILVER_DQ_REPORTS, data.BRONZE_LEDGER, data.BRONZE, data.SILVER_CLEAN, data.SILVER_QUARANTINE
)
if versions[0] is None:
    common.empty("No pipeline run yet: silver_dq_reports does not exist.", "Run `wikichurn pipeline run`.")
runs, completeness, counts = common.quality(reader, reader.root, versions)

bronze, clean, quarantined = counts["bronze"], counts["clean"], counts["quarantined"]
conserved = None not in (bronze, clean, quarantined) and bronze == clean + quarantined
a, b, c, d = st.columns(4)
a.metric("Pipeline runs", f"{len(runs):,}")
b.metric("Bronze rows", f"{bronze or 0:,}")
c.metric("Silver clean + quarantined", f"{(clean or 0) + (quarantined or 0):,}")
d.metric("Conservation", "holds" if conserved else "BROKEN")
if conserved:
    st.success(
        f"Conservation holds: bronze {bronze:,} = clean {clean:,} + quarantined {quarantined:,}; "
        f"every run: {'yes' if runs['conserved'].all() else 'no'}."
    )
else:
    st.error(f"Conservation broken: bronze {bronze} != clean {clean} + quarantined {quarantined}.")

st.subheader("Per run")
reason_cols = [col for col in runs.columns if col.startswith("q_")]
st.dataframe(
    runs.sort_values("run_at", ascending=False),
    hide_index=True,
    column_config={
        "run_at": st.column_config.DatetimeColumn("run at (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "rows_in": st.column_config.NumberColumn("rows in", format="localized"),
        "rows_clean": st.column_config.NumberColumn("clean", format="localized"),
        "rows_quarantined": st.column_config.NumberColumn("quarantined", format="localized"),
        **{col: st.column_config.NumberColumn(col.removeprefix("q_"), format="localized") for col in reason_cols},
        "conserved": st.column_config.CheckboxColumn("in = clean + quarantined"),
    },
    key="runs",
)
if runs[reason_cols].to_numpy().sum() > 0:
    common.chart(charts.quarantine_by_run(runs))

st.subheader("Hourly completeness")
if completeness is None:
    common.empty("No ledger yet.", "Run `wikichurn pipeline run`.")
common.chart(charts.completeness_calendar(completeness))
missing = completeness[completeness["hours_present"] < 24].copy()
if missing.empty:
    st.success(f"All {len(completeness)} dates have their 24 hourly files.")
else:
    missing["missing_hours"] = missing["missing_hours"].map(lambda hs: ", ".join(f"{h:02d}:00" for h in hs))
    st.markdown(f"**{len(missing)} of {len(completeness)} dates miss hourly files** (hours in UTC):")
    st.dataframe(missing[["event_date", "hours_present", "missing_hours"]], hide_index=True, key="missing_hours")
common.footer()
