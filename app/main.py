"""The StockPulse workbench: `streamlit run app/main.py`, or `python -m app.launch` (supervisord's
`app` program, which adds the sign-in's settings when an OpenID Connect provider is set; `make
demo` runs it for you).

The one entry point: page set-up shared by every page (page config, settings check, the account
panel and the disclaimer in the sidebar) and the navigation between the pages in `app/views/`.
The app only reads: the scoring worker (`python -m ml.serving.scoring_worker`) scores every bar as
it is stored.
"""

import streamlit as st

from app import ui

PAGES = [
    st.Page(
        "views/live_signals.py", title="Live signals", icon=":material/monitoring:", default=True
    ),
    st.Page("views/stock_detail.py", title="Stock detail", icon=":material/candlestick_chart:"),
    st.Page("views/model_lab.py", title="Model lab", icon=":material/science:"),
    st.Page("views/backtest.py", title="Backtest", icon=":material/query_stats:"),
    st.Page("views/drift_and_history.py", title="Drift & history", icon=":material/timeline:"),
    st.Page("views/data_health.py", title="Data health", icon=":material/health_and_safety:"),
    st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:"),
]

page = st.navigation(PAGES)
ui.setup(page.title)
page.run()
