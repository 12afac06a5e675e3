"""The data-quality guard in the app: the held-ticker notice every signal page shows, and the
data-health page's section (held tickers, quarantined bars, the daily reconciliation, flagged
news and macro inputs) with the analysts' accept/reject forms.

Decisions need the analyst role (`app.sign_in.authorize`); the record names the analyst and
the reason (`db.quality_decisions.decide_hold`, `decide_bar`). Tables are shown with
`st.dataframe`, which renders text as text; sentences built from stored text escape it
(`app.text.escape_markdown`).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from app import auth, health_data, sign_in, ui
from app.text import escape_markdown
from db import quality, quality_decisions


def held_notice(tickers: list[str] | None = None) -> None:
    """A warning naming the held tickers (of `tickers`, or all): their signals are HOLD."""
    held = health_data.held()
    if tickers is not None:
        held = held[held["ticker"].isin(tickers)]
    if held.empty:
        return
    lines = [
        f"**{escape_markdown(r.ticker)}** since {escape_markdown(ui.fmt_ts(r.onset_ts))}: "
        f"{escape_markdown(r.detail, max_chars=300)}"
        for r in held.itertuples(index=False)
    ]
    st.warning(
        "Held by the data-quality guard: the signals of these tickers are HOLD until an "
        "analyst accepts or rejects the flag on the Data health page.\n\n- " + "\n- ".join(lines),
        icon=":material/front_hand:",
    )


def _decide(name: str, password: str, act: Callable[[str], str]) -> None:
    try:
        actor = sign_in.authorize(name, password)
    except auth.AccessDenied as exc:
        st.error(str(exc), icon=":material/lock:")
        return
    try:
        said = act(actor)
    except quality_decisions.DecisionError as exc:
        st.error(escape_markdown(exc))
        return
    health_data.forget_quality()
    ui.flash(said)
    st.rerun()


def holds_section() -> None:
    st.subheader("Held tickers")
    held = health_data.held()
    if held.empty:
        st.success("No ticker is held: no unexplained level shift is waiting for a decision.")
    else:
        st.dataframe(
            held.assign(onset=held["onset_ts"].map(ui.fmt_ts))[
                ["id", "ticker", "onset", "detail", "source"]
            ],
            hide_index=True,
            width="stretch",
            key="holds_table",
        )
        with st.form("hold_decision", clear_on_submit=True):
            choice = st.selectbox(
                "Hold",
                held["id"].tolist(),
                format_func=lambda i: _hold_label(held, int(i)),
                key="hold_id",
            )
            decision = st.radio(
                "Decision",
                [quality.ACCEPTED, quality.REJECTED],
                format_func={
                    quality.ACCEPTED: "Accept: the new price level is real (the hold ends)",
                    quality.REJECTED: "Reject: bad prints (the bars from the onset on go to "
                    "quarantine, the hold ends)",
                }.get,
                key="hold_decision_choice",
            )
            reason = st.text_input("Reason (recorded)", max_chars=300, key="hold_reason")
            name, password = ui.credentials("hold")
            submitted = st.form_submit_button("Record the decision")
        if submitted:
            _decide(
                name,
                password,
                lambda by: quality_decisions.decide_hold(int(choice), str(decision), by, reason),
            )
    history = health_data.hold_history()
    decided = history[history["status"] != quality.HELD]
    if not decided.empty:
        with st.expander(f"Decided holds ({len(decided)})"):
            st.dataframe(decided, hide_index=True, width="stretch", key="hold_history")


def _hold_label(held: pd.DataFrame, hold_id: int) -> str:
    row = held[held["id"] == hold_id].iloc[0]
    return f"#{hold_id} {row['ticker']} since {ui.fmt_ts(row['onset_ts'])}"


def quarantine_section() -> None:
    st.subheader("Quarantined bars")
    st.caption(
        "Kept out of every price read (features, training, scoring, outcomes, charts) with "
        "their raw values as served; the backfill fetches each minute again once and stores "
        "the new print if it passes. A close that moved like a spike waits for its next bar "
        "(pending)."
    )
    counts = health_data.quarantine_counts()
    if counts.empty:
        st.success("No bar has been quarantined.")
        return
    st.dataframe(
        counts,
        hide_index=True,
        width="stretch",
        key="quarantine_counts",
        column_config={
            "open": st.column_config.NumberColumn("Open"),
            "total": st.column_config.NumberColumn("All time"),
        },
    )
    bars = health_data.quarantined_open()
    if bars.empty:
        st.caption("Every quarantined minute has been replaced or decided.")
        return
    st.dataframe(
        bars.assign(minute=bars["ts"].map(ui.fmt_ts))[
            ["id", "ticker", "minute", "reason", "detail", "open", "high", "low", "close"]
            + ["volume", "source", "status"]
        ],
        hide_index=True,
        width="stretch",
        key="quarantine_table",
    )
    open_ids = bars.loc[bars["status"] == quality.QUARANTINED, "id"].tolist()
    if open_ids:
        bar_decision_form(bars, open_ids)


def bar_decision_form(bars: pd.DataFrame, open_ids: list[int]) -> None:
    """An analyst's decision on one quarantined bar of `open_ids`: reject or accept it."""
    with st.form("bar_decision", clear_on_submit=True):
        choice = st.selectbox(
            "Quarantined bar",
            open_ids,
            format_func=lambda i: _bar_label(bars, int(i)),
            key="bar_id",
        )
        decision = st.radio(
            "Decision",
            [quality.REJECTED, quality.ACCEPTED],
            format_func={
                quality.REJECTED: "Reject: a bad print (it stays out)",
                quality.ACCEPTED: "Accept: a real print (it is stored as a bar)",
            }.get,
            key="bar_decision_choice",
        )
        reason = st.text_input("Reason (recorded)", max_chars=300, key="bar_reason")
        name, password = ui.credentials("bar")
        submitted = st.form_submit_button("Record the decision")
    if submitted:
        _decide(
            name,
            password,
            lambda by: quality_decisions.decide_bar(int(choice), str(decision), by, reason),
        )


def _bar_label(bars: pd.DataFrame, bar_id: int) -> str:
    row = bars[bars["id"] == bar_id].iloc[0]
    return f"#{bar_id} {row['ticker']} {ui.fmt_ts(row['ts'])} ({row['reason']})"


def inputs_section() -> None:
    st.subheader("News and macro inputs cleaned, dropped or flagged")
    flags = health_data.input_flags()
    if flags.empty:
        st.success("Every article and macro value arrived clean.")
        return
    st.dataframe(
        flags.assign(detail=flags["detail"].map(lambda d: str(d)[:300])),
        hide_index=True,
        width="stretch",
        key="input_flags",
    )


def quality_section() -> None:
    """The guard's records on the data-health page."""
    st.header("Data quality")
    holds_section()
    quarantine_section()
    reconciliation_section()
    inputs_section()


def reconciliation_section() -> None:
    st.subheader("Daily reconciliation")
    results = health_data.reconciliation()
    if results.empty:
        st.info(
            "No session reconciled yet: the reconciliation job runs after the close "
            "(`python -m workers.reconcile`)."
        )
        return
    problems = results[results["status"] != "ok"]
    checked = results["session_date"].nunique()
    if problems.empty:
        st.success(f"The stored bars match the source's daily bars ({checked} session(s)).")
    else:
        st.warning(f"{len(problems)} ticker-day(s) differ from the source's daily bars.")
    st.dataframe(
        problems if not problems.empty else results.head(40),
        hide_index=True,
        width="stretch",
        key="reconciliation",
    )
