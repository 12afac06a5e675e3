"""The StockPulse workbench: `streamlit run app/main.py` (supervisord's `app` program; `make demo`
runs it for you).

The one entry point: page set-up shared by every page (page config, settings check, the
disclaimer in the sidebar), the server's live scorer (started by whichever page is opened first)
and the navigation between the pages in `app/views/`.
"""

import streamlit as st

from app import live, ui

PAGES = [
    st.Page(
        "views/live_signals.py", title="Live signals", icon=":material/monitoring:", default=True
    ),
    st.Page("views/stock_detail.py", title="Stock detail", icon=":material/candlestick_chart:"),
    st.Page("views/model_lab.py", title="Model lab", icon=":material/science:"),
    st.Page("views/drift_and_history.py", title="Drift & history", icon=":material/timeline:"),
    st.Page("views/data_health.py", title="Data health", icon=":material/health_and_safety:"),
]

page = st.navigation(PAGES)
ui.setup(page.title)
with ui.guard(retry=False):
    live.live_scorer()  # one per server: scores every new bar for every serving version
page.run()
