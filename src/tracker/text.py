"""Plain text from feed HTML (already sanitised by feedparser), for matching and display."""

from __future__ import annotations

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
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    return normalise_space("".join(collector.parts))
