"""Text from the URL, the database or a feed shows as typed: no Markdown link, image, emphasis or
directive formed from it (`app.text.escape_markdown`), nor HTML in a chart (`escape_html`)."""

from __future__ import annotations

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from app.text import WORD_JOINER, escape_html, escape_markdown
from db.writes import write_to_db
from tests.app.support import alerts, figures, open_page, texts

LINK = "[click](http://evil.example)"
IMAGE = "![x](http://evil.example/x.png)"
INJECTED = f"{LINK} {IMAGE} **bold** :red[red] :material/home: $x$ <b>b</b> `c` # h www.x.example"


def rendered(markdown: str) -> str:
    """The HTML CommonMark makes of `markdown` (what Streamlit's renderer starts from)."""
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def assert_inert(markdown: str) -> None:
    html = rendered(markdown)
    for tag in ("<a ", "<img", "<strong", "<em", "<code", "<h1", "<b>"):
        assert tag not in html, (tag, html)
    # GFM turns `scheme://...` and `www.` in plain text into links: a word joiner breaks both
    assert "://" not in html and "www." not in html, html


def visible(text: str) -> str:
    return text.replace(WORD_JOINER, "")


@pytest.mark.no_db
def test_escaped_text_forms_no_markup_and_reads_as_typed() -> None:
    shown = escape_markdown(INJECTED)
    assert_inert(shown)
    assert_inert(f"Why: {shown}")  # inside a sentence too
    assert "\\[click\\]\\(http\\:\\/\\/evil\\.example\\)" in visible(shown)
    assert "\\:red\\[red\\]" in shown and "\\:material\\/home\\:" in shown and "\\$x\\$" in shown
    # CommonMark drops each backslash: the reader sees the text as it was typed
    as_typed = escape_html(INJECTED).replace("&#x27;", "'")
    assert visible(rendered(shown)) == f"<p>{as_typed}</p>\n"


@pytest.mark.no_db
def test_line_breaks_and_length() -> None:
    assert escape_markdown("one\n\n# two\r\n- three") == "one \\# two \\- three"
    assert escape_markdown("abcdef", max_chars=4) == "abc…"
    assert escape_markdown(None) == "None"


@pytest.mark.no_db
def test_chart_labels_escape_html() -> None:
    assert escape_html('<a href="http://evil.example">x</a> & co') == (
        "&lt;a href=&quot;http://evil.example&quot;&gt;x&lt;/a&gt; &amp; co"
    )


@pytest.mark.parametrize("asked", [LINK, IMAGE])
def test_a_ticker_parameter_with_markdown_shows_as_text(app_env, asked: str) -> None:
    app_env.feed().seed()
    at = open_page("detail", {"ticker": asked})
    assert not at.exception
    [warning] = [w for w in alerts(at, "warning") if "is not in the universe" in w]
    assert escape_markdown(asked) in warning
    assert "](" not in warning and "[click]" not in warning
    assert_inert(warning)
    assert figures(at)["price_chart"]["data"][0]["type"] == "candlestick"  # the first ticker


def test_a_long_unknown_ticker_is_cut_in_the_message(app_env) -> None:
    at = open_page("detail", {"ticker": "Z" * 500})
    [warning] = [w for w in alerts(at, "warning") if "is not in the universe" in w]
    assert "Z" * 39 + "…" in warning and "Z" * 41 not in warning


def test_a_stored_signal_reason_with_markdown_shows_as_text(app_env) -> None:
    newest = app_env.feed().seed()
    version = app_env.promote()
    row = {
        "ticker": "MSFT",
        "bar_ts": newest,
        "model_version": version,
        "action": "BUY",
        "confidence": 0.8,
        "lstm_label": "UP",
        "lstm_p_down": 0.1,
        "lstm_p_neutral": 0.1,
        "lstm_p_up": 0.8,
        "transformer_label": "UP",
        "transformer_p_down": 0.1,
        "transformer_p_neutral": 0.1,
        "transformer_p_up": 0.8,
        "close": 100.0,
        "reason": f"both agree {INJECTED}",
    }
    write_to_db(pd.DataFrame([row]), table="signals")
    at = open_page("detail", {"ticker": "MSFT"})
    assert not at.exception
    [card] = [t for t in texts(at) if "Why: " in t]
    assert f"Why: both agree {escape_markdown(INJECTED)}" in card
    assert_inert(card)
    hover = next(t for t in figures(at)["price_chart"]["data"] if t.get("name") == "BUY pending")
    assert "&lt;b&gt;b&lt;/b&gt;" in hover["hovertext"][0]  # in the chart: HTML shown as text


@pytest.mark.slow
def test_in_a_browser_the_ticker_parameter_renders_as_typed(app_env, tmp_path) -> None:
    """What Streamlit's own renderer (GFM, directives, emoji, maths) makes of the escaped text."""
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    from tests.app.support import CHROMIUM, CHROMIUM_ARGS, StreamlitServer

    asked = ["[click](http://evil.example)", "![x](http://e.example/x.png) **b**", ":red[r] $x$"]
    asked += [":material/home: `c`", "www.evil.example <b>b</b>"]
    with (
        StreamlitServer(tmp_path / "streamlit.log", {"APP_REFRESH_S": "60"}) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        for text in asked:
            page.goto(f"{server.url}/stock_detail?ticker={quote(text)}")
            warning = page.locator('[data-testid="stAlertContentWarning"]').filter(
                has_text="is not in the universe"
            )
            warning.first.wait_for(timeout=60_000)
            body = warning.first.locator('[data-testid="stMarkdownContainer"]')
            assert body.locator("a, img, strong, code, span.katex").count() == 0, text
            assert f"Ticker '{text}' is not" in visible(body.inner_text())
        browser.close()
