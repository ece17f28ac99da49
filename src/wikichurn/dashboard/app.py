"""The Streamlit entry point: ``streamlit run`` this file (``wikichurn dashboard`` does)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="wikichurn", page_icon=":material/monitoring:", layout="wide")
page = st.navigation(
    [
        st.Page(VIEWS / "at_risk.py", title="At risk", icon=":material/warning:", default=True),
        st.Page(VIEWS / "engagement.py", title="Engagement", icon=":material/trending_up:", url_path="engagement"),
        st.Page(VIEWS / "data_quality.py", title="Data quality", icon=":material/fact_check:", url_path="data-quality"),
        st.Page(VIEWS / "model.py", title="Model", icon=":material/model_training:", url_path="model"),
    ]
)
page.run()
