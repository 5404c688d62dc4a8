"""Plain text from feed HTML (already sanitised by feedparser), for matching and display."""

from __future__ import annotations

import re
import sys
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
# The attributes possessively (*+): a tag never needs one given back to match, and a "<" with
# a million attributes and no ">" would otherwise hold a million backtracking points (800 MB
# for a 4 MB title).
_PLAIN_TAG = re.compile(
    rf"<(?:/([a-zA-Z][a-zA-Z0-9]*){_WS}*|([a-zA-Z][a-zA-Z0-9]*)(?:{_ATTRIBUTE})*+{_WS}*/?)>"
)

# HTMLParser before the fix of CPython gh-135462 (CVE-2025-6069; fixed in 3.11.13, 3.12.11,
# 3.13.4) is quadratic on markup whose constructs never end: for each "<" of an unfinished
# tag, comment or marked section it searches the rest of the text for the end, then takes only
# the next few characters as text and searches again from the next "<". A feed title of
# "a&lt;" repeated (195 KB) took 4.4 s, 10 MB hours. On those versions _LinearCollector reads
# the same text in linear time: what those searches would find is known from one pass.
_FIXED_IN = {(3, 11): 13, (3, 12): 11, (3, 13): 4}
_QUADRATIC = sys.version_info[:2] in _FIXED_IN and (
    sys.version_info[2] < _FIXED_IN[sys.version_info[:2]]
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
    collector = _LinearCollector() if _QUADRATIC else _TextCollector()
    collector.feed(_escape_unending(markup) if _QUADRATIC else markup)
    collector.close()
    return normalise_space("".join(collector.parts))


# -- HTMLParser in linear time (see _QUADRATIC) ----------------------------------------------
#
# What follows says what HTMLParser 3.11.7 does with markup that is not a whole construct; the
# tests check it against HTMLParser itself on generated markup.

# HTMLParser ends a tag name at one of these (not at every whitespace \s knows).
_TAG_NAME = re.compile(r"[a-zA-Z][^\t\n\r\f />\x00]*")
_TAG_NAME_END = re.compile(r"[\t\n\r\f />\x00]")
_SPACES_OR_SLASHES = re.compile(r"[\s/]*")
_SPACES = re.compile(r"\s*")
# One attribute of HTMLParser's start tag pattern, up to its "=" (the value is taken apart
# below), and what may follow an attribute.
_ATTRIBUTE_NAME = re.compile(r"(?<=['\"\s/])[^\s/>][^\s/=>]*")
_EQUALS = re.compile(r"\s*(=+)\s*")
_BARE_VALUE = re.compile(r"[^>\s]*")
_BETWEEN_ATTRIBUTES = re.compile(r"(?:\s|/(?!>))*")
_TAG_MARK = re.compile(r"[>'\"]")
_COMMENT_CLOSE = re.compile(r"--\s*>")
_SECTION_CLOSE = re.compile(r"]\s*]\s*>")
_MS_SECTION_CLOSE = re.compile(r"]\s*>")
_SECTION_NAME = re.compile(r"[a-zA-Z][-_.a-zA-Z0-9]*\s*")
_SECTIONS = frozenset({"temp", "cdata", "ignore", "include", "rcdata"})
_MS_SECTIONS = frozenset({"if", "else", "endif"})
# Of a chain of attributes, every this many are remembered (see _attributes_end).
_REMEMBER_EVERY = 16


def _escape_unending(markup: str) -> str:
    """The markup with each "<" after its last ">" escaped: nothing it starts can end, and
    HTMLParser takes each for text, after searching the rest of the markup for an end. One
    exception kept: a tag name ended by a NUL is given as text as it stands, unescaped."""
    last = markup.rfind(">")
    at = markup.find("<", last + 1)
    if at < 0:
        return markup
    pieces = [markup[:at]]
    name_end = -1
    while at >= 0:
        start = at
        following = markup[at + 1 : at + 2]
        if following.isascii() and following.isalpha():
            if name_end < at + 2:
                found = _TAG_NAME_END.search(markup, at + 2)
                name_end = found.start() if found else len(markup)
            if (
                markup[name_end : name_end + 1] == "\x00"
                and not markup[name_end - 1].isspace()
                and markup[name_end - 1] not in "'\""
            ):
                name = markup[at + 1 : name_end].replace("&", "&amp;").replace("<", "&lt;")
                pieces.append("&lt;" + name)
                start = name_end
            else:
                pieces.append("&lt;")
                start = at + 1
        else:
            pieces.append("&lt;")
            start = at + 1
        at = markup.find("<", start)
        pieces.append(markup[start : at if at >= 0 else len(markup)])
    return "".join(pieces)


def _past(pattern: re.Pattern[str], text: str, at: int) -> int:
    """Where `pattern`, which may match nothing, stops matching from `at`."""
    match = pattern.match(text, at)
    assert match is not None
    return match.end()


def _last_start(pattern: re.Pattern[str], text: str) -> int:
    """Where the last match of `pattern` in `text` starts (-1 if none): a search from any
    position up to there finds one, and from beyond there none."""
    last = -1
    for match in pattern.finditer(text):
        last = match.start()
    return last


class _LinearCollector(_TextCollector):
    """_TextCollector, and HTMLParser's searches for the end of a comment, a marked section
    or a start tag answered from an index of the text built once: a construct that never ends
    is known at once, and a start tag whose quoted values hold ">" is read attribute by
    attribute, each attribute once however many tags start before it."""

    def __init__(self) -> None:
        super().__init__()
        self._indexed: str | None = None
        self._comment_close = self._section_close = self._ms_section_close = -1
        self._last_quote: dict[str, int] = {}
        self._mark = -1
        self._attribute_ends: dict[int, int] = {}

    def _index(self) -> str:
        text = self.rawdata
        if text is not self._indexed:  # feed() leaves close() the text from where it stopped
            self._indexed = text
            self._comment_close = _last_start(_COMMENT_CLOSE, text)
            self._section_close = _last_start(_SECTION_CLOSE, text)
            self._ms_section_close = _last_start(_MS_SECTION_CLOSE, text)
            self._last_quote = {quote: text.rfind(quote) for quote in "'\""}
            self._mark = -1
            self._attribute_ends = {}
        return text

    def parse_comment(self, i: int, report: bool = True) -> int:
        self._index()
        if self._comment_close < i + 4:
            return -1
        return super().parse_comment(i, report)

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        text = self._index()
        name = _SECTION_NAME.match(text, i + 3)
        if name is None or name.end() == len(text):
            # HTMLParser raises AssertionError for the first (and a keyword it does not know,
            # below): taken for text here, as any other construct that does not end.
            return -1
        keyword = name.group().strip().lower()
        if keyword in _SECTIONS:
            close = self._section_close
        elif keyword in _MS_SECTIONS:
            close = self._ms_section_close
        else:
            return -1
        if close < i + 3:
            return -1
        return super().parse_marked_section(i, report)

    def check_for_whole_start_tag(self, i: int) -> int:
        text = self._index()
        # Start tags come in order, so one search ahead serves every tag before what it found.
        if self._mark < i:
            found = _TAG_MARK.search(text, i)
            self._mark = found.start() if found else len(text)
        if self._mark == len(text) or text[self._mark] == ">":
            # No quote before the next ">": HTMLParser's own search stops there.
            return super().check_for_whole_start_tag(i)
        name = _TAG_NAME.match(text, i + 1)
        assert name is not None  # the caller saw "<" and a letter
        end = _past(_SPACES_OR_SLASHES, text, name.end())
        end = _past(_SPACES, text, self._attributes_end(end))
        following = text[end : end + 1]
        if following == ">":
            return end + 1
        if following == "/":
            return end + 2 if text.startswith("/>", end) else -1
        if not following or following == "=" or (following.isascii() and following.isalpha()):
            return -1  # an unfinished tag (HTMLParser would wait for more)
        return end if end > i else i + 1

    def _attributes_end(self, at: int) -> int:
        """Where the attributes from `at` on end. Every _REMEMBER_EVERY-th attribute's answer is
        kept: tags starting inside the attributes of another one (in its quoted values) fall in
        step with it at some attribute, and from there on each reuses its answer."""
        known = self._attribute_ends
        passed: list[int] = []
        while (end := known.get(at)) is None:
            passed.append(at)
            following = self._attribute(at)
            if following is None:
                end = at
                break
            at = following
        for each in passed[::_REMEMBER_EVERY]:
            known[each] = end
        return end

    def _attribute(self, at: int) -> int | None:
        """Where the attribute starting at `at` (and what follows it) ends; None if none
        starts there."""
        text = self._indexed
        assert text is not None
        name = _ATTRIBUTE_NAME.match(text, at)
        if name is None:
            return None
        end = name.end()
        equals = _EQUALS.match(text, end)
        if equals is not None:
            value = equals.end()
            quote = text[value : value + 1]
            if quote not in ("'", '"'):
                end = _past(_BARE_VALUE, text, value)
            elif self._last_quote[quote] > value:
                end = text.find(quote, value + 1) + 1
            # A quote never closed: the pattern backtracks to an empty bare value before it,
            # or to a bare value from the last "=" of several, or gives the value up.
            elif value > equals.end(1):
                end = value - 1
            elif equals.end(1) - equals.start(1) > 1:
                end = _past(_BARE_VALUE, text, equals.end(1) - 1)
            else:
                equals = None
            if equals is not None:
                end = _past(_SPACES, text, end)
        return _past(_BETWEEN_ATTRIBUTES, text, end)
