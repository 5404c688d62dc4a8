"""Plain text from feed HTML (already sanitised by feedparser), for matching and display."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

from tracker.identity import normalise_space

# Elements after which a reader sees a break between words.
_BLOCKS = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "td",
        "th",
        "blockquote",
        "figure",
        "figcaption",
        "section",
        "article",
        "header",
        "footer",
        "hr",
    }
)
_INVISIBLE = frozenset({"script", "style", "template", "noscript"})
# Elements whose content HTMLParser reads other than as markup (raw text, RCDATA; newer Pythons
# add some) or that we hide: text holding one goes the slow, sure way.
_SPECIAL = _INVISIBLE | {"textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"}
# A tag that HTMLParser reads as we do with one regular expression, in every Python version: a
# name of ASCII letters and digits; attributes each after whitespace, with a name, and a value
# quoted (holding no angle bracket) or bare (no quote, "=", "<", ">" or backtick). Anything
# else (comments, declarations, a stray "<", odd attributes) leaves a "<" outside the tags
# matched, and the text goes to HTMLParser.
_WS = r"[\t\n\r\f ]"
_ATTRIBUTE = (
    rf"{_WS}+[a-zA-Z_:][-a-zA-Z0-9_:.]*"
    rf"(?:{_WS}*={_WS}*(?:\"[^\"<>]*\"|'[^'<>]*'|[^\s\"'=<>`]+))?"
)
_PLAIN_TAG = re.compile(
    rf"<(?:/([a-zA-Z][a-zA-Z0-9]*){_WS}*|([a-zA-Z][a-zA-Z0-9]*)(?:{_ATTRIBUTE})*{_WS}*/?)>"
)


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE and self._hidden:
            self._hidden -= 1
        elif tag in _BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The words a reader would see, with runs of whitespace made single spaces."""
    if "<" not in markup and "&" not in markup:
        return normalise_space(markup)  # the common case for titles: nothing to parse
    plain = _plain_markup_text(markup)
    return plain if plain is not None else _parsed_text(markup)


def _plain_markup_text(markup: str) -> str | None:
    """html_to_text for markup of plain tags only (most feed HTML, once sanitised), five times
    faster than HTMLParser and with the same result; None for anything else."""
    parts: list[str] = []
    start = 0
    for tag in _PLAIN_TAG.finditer(markup):
        data = markup[start : tag.start()]
        if "<" in data:
            return None
        # HTMLParser (convert_charrefs) unescapes the text between two tags in one piece.
        parts.append(unescape(data) if "&" in data else data)
        name = (tag[1] or tag[2]).lower()
        if name in _SPECIAL:
            return None
        if name in _BLOCKS:
            parts.append(" ")
        start = tag.end()
    data = markup[start:]
    if "<" in data:
        return None
    parts.append(unescape(data) if "&" in data else data)
    return normalise_space("".join(parts))


def _parsed_text(markup: str) -> str:
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    return normalise_space("".join(collector.parts))
