"""Text from the database, the feeds, the URL or a user, made safe to show on a page.

Streamlit renders the body of `st.markdown`, `st.caption`, `st.info` / `warning` / `error` /
`success`, titles, headers, metric labels and `help=` as Markdown: links, images, emphasis,
headings, lists, `:color[...]` and `:material/...:` directives and `$...$` maths.
`escape_markdown` escapes every ASCII punctuation character (CommonMark lets any of them be
backslash-escaped), so such text shows as typed and can form no link, image or directive.
Tables (`st.dataframe`) render text as text and need none of this.

Plotly renders a subset of HTML in titles, names and hover text (`<a href>`, `<b>`, `<br>`):
`escape_html` escapes text placed there.
"""

from __future__ import annotations

import html as html_lib
import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
# where the renderer would turn plain text into a link (GFM's literal autolinks: `scheme://...`,
# `www.`), whatever is escaped: an invisible word joiner there keeps the text a text
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=\bwww)(?=\.)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def escape_markdown(text: object, max_chars: int | None = None) -> str:
    """`text` as a Markdown-safe string: line breaks become spaces (one line stays one line),
    cut to `max_chars` (with an ellipsis), every ASCII punctuation character escaped."""
    shown = _LINE_BREAKS.sub(" ", str(text))
    if max_chars is not None and len(shown) > max_chars:
        shown = shown[: max(max_chars - 1, 0)] + "…"
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, shown))


def escape_html(text: object) -> str:
    """`text` safe inside plotly's HTML-like labels (`<`, `>`, `&` and quotes as entities)."""
    return html_lib.escape(str(text), quote=True)


def code_span(text: object) -> str:
    """`text` for inside a Markdown code span (shown literally): backticks, which would end the
    span, and line breaks are replaced."""
    return _LINE_BREAKS.sub(" ", str(text)).replace("`", "'")
