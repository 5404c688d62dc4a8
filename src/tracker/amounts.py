"""Figures reported in news text: money, counts, percentages and durations. Pure functions.

Written for news copy rather than taken from a library: the parsers on PyPI read "$15 million"
as 15 and "about $30" as a date. Each figure keeps the words as printed, its value in base units
(dollars, not millions), and a label: the word near it that says what it counts ("reward",
"sentence", "investors"), so that one reported figure can be followed as it changes
(a reward of $15 million, then $25 million, then $50 million).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tracker.sentences import sentence_spans

MONEY = "money"
COUNT = "count"
PERCENT = "percent"
DURATION = "duration"

_WORD_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90, "hundred": 100, "dozen": 12,
}  # fmt: skip
_SCALES = {
    "thousand": 10**3, "k": 10**3, "mil": 10**3,
    "million": 10**6, "millions": 10**6, "m": 10**6, "mn": 10**6, "mln": 10**6,
    "millones": 10**6, "millón": 10**6, "millon": 10**6,
    "billion": 10**9, "bn": 10**9, "b": 10**9, "trillion": 10**12,
    "mil millones": 10**9,
}  # fmt: skip
_CURRENCY_SIGNS = {"us$": "USD", "$": "USD", "€": "EUR", "£": "GBP", "usd": "USD", "eur": "EUR"}
_CURRENCY_WORDS = {
    "dollars": "USD", "dólares": "USD", "dolares": "USD", "euros": "EUR", "pounds": "GBP",
}  # fmt: skip
_DURATION_UNITS = {"year": "years", "month": "months", "week": "weeks", "day": "days",
                   "decade": "decades", "año": "years", "mes": "months", "día": "days"}  # fmt: skip

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_WORDNUM = (
    r"(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:-(?:one|two|three|four|five"
    r"|six|seven|eight|nine))?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
    r"|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|a dozen|a hundred"
)
_SCALE = r"mil millones|thousand|millions?|millones|mill[oó]n|billion|trillion|mln|mn|bn|[mbk]"
_QUALIFIER = r"(?:about|around|roughly|nearly|almost|some|more than|over|at least|up to|unas?)\s+"

_MONEY_SIGN = re.compile(
    rf"(?P<cur>US\$|\$|€|£|\b(?:USD|EUR)\s?)\s?(?P<num>{_NUM})"
    rf"(?:\s?(?P<scale>{_SCALE})\b)?",
    re.IGNORECASE,
)
_MONEY_WORD = re.compile(
    rf"\b(?P<num>{_NUM})\s?(?:(?P<scale>{_SCALE})\s)?(?:de\s)?"
    r"(?P<cur>dollars|d[oó]lares|euros|pounds)\b",
    re.IGNORECASE,
)
_PERCENT = re.compile(
    rf"\b(?P<num>{_NUM}|{_WORDNUM})\s?(?:%|\s(?:percent|per cent|por ciento)\b)",
    re.IGNORECASE,
)
_DURATION = re.compile(
    rf"\b(?P<num>{_NUM}|{_WORDNUM})[\s-](?P<unit>years?|months?|weeks?|days?|decades?"
    r"|años?|mes(?:es)?|días?)\b(?!-old|\s+old\b|\s+ago\b|\s+earlier\b|\s+later\b)",
    re.IGNORECASE,
)
_COUNT = re.compile(
    rf"\b(?P<num>{_NUM}|{_WORDNUM})(?:\s(?P<scale>thousand|million|billion|millones|mil))?\s+"
    r"(?P<mods>(?:[A-Z][\w'’]*(?:-[A-Za-z]\w*)*\s+){0,2}|(?:[a-z]+\s+)?)"
    # No noun counted is longer than 40 letters; an unbounded one would index any junk.
    r"(?P<noun>[A-Za-z][a-z]{2,40}s|people|children|men|women|staff|police|personnel)\b"
)
_NUMBER = re.compile(rf"\b(?:{_NUM}|{_WORDNUM})", re.IGNORECASE)
# Where a number could begin: a word that begins with a digit or with the start of a number
# _WORDNUM spells out (every one of them begins with one of these).
_NUMBER_STARTS = (
    r"o(?:ne)|t(?:w(?:o|elve|enty)|h(?:ree|irt(?:een|y))|en)|f(?:o(?:ur|rty)|i(?:ve|f(?:teen"
    r"|ty)))|s(?:ix|even)|e(?:ight|leven)|nine|a (?:dozen|hundred)"
)
# ... in lower-cased text;
_NUMBER_PLACE = re.compile(rf"(?<!\w)(?:\d|{_NUMBER_STARTS})")
# ... and in the skeleton of an ASCII text: a space for each character that is no part of a
# word, "0" for each digit, letters in lower case, and a space before it all. A pattern that
# begins with a plain space runs several times faster than one that begins by looking back.
_SKELETON = bytes(
    ord("0")
    if chr(b).isdigit()
    else ord(chr(b).lower())
    if chr(b).isalnum() or b == ord("_")
    else ord(" ")
    for b in range(128)
) + bytes(range(128, 256))
_SKELETON_PLACE = re.compile(rf" (?:0|{_NUMBER_STARTS})".encode("ascii"))
# The patterns tried where a number begins, in the order their figures are taken.
_AT_NUMBERS = (_MONEY_WORD, _PERCENT, _DURATION, _COUNT)
# The characters beyond ASCII that a case-insensitive pattern takes for an ASCII letter (İ, ı,
# ſ and the Kelvin sign); İ is also the one character whose lower case is two characters.
_CASE_TRAPS = ("\u0130", "\u0131", "\u017f", "\u212a")
_MONTHS = re.compile(
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s*$", re.IGNORECASE
)
_NOT_COUNTED_TEXT = """
    years months weeks days decades hours minutes seconds times percent dollars euros pounds
    millions billions thousands hundreds dozens points votes was has this its
"""
_NOT_COUNTED = frozenset(_NOT_COUNTED_TEXT.split())

# Words that say what a figure is about, and the label each one gives.
_LABELS = {
    "reward": "reward", "rewards": "reward", "bounty": "reward", "recompensa": "reward",
    "fine": "fine", "fined": "fine", "forfeiture": "forfeiture", "forfeit": "forfeiture",
    "restitution": "restitution", "judgment": "judgment", "judgement": "judgment",
    "settlement": "settlement", "investment": "investment", "investments": "investment",
    "invested": "investment", "invest": "investment", "losses": "losses", "lost": "losses",
    "loans": "loans", "loan": "loans", "sentence": "sentence", "sentenced": "sentence",
    "prison": "sentence", "salary": "salary", "bail": "bail", "ransom": "ransom",
    "damages": "damages", "profits": "profits", "profit": "profits", "revenue": "revenue",
    "revenues": "revenue", "budget": "budget", "aid": "aid", "funding": "funding",
    "growth": "growth", "grew": "growth", "territory": "territory", "production": "production",
    "output": "production", "barrels": "production", "condominium": "property",
    "condo": "property", "debt": "debt",
}  # fmt: skip
_LABEL_WINDOW = 6  # words either side of the figure
# "up from $15 million", "from $25 million to $50 million", "previously $15 million".
_EARLIER = re.compile(
    r"\b(?:from|previous(?:ly)?|earlier|formerly)\s+(?:about\s+|an?\s+)?$", re.IGNORECASE
)
_TOKEN = re.compile(r"[\w'’]+")
_YEAR = re.compile(r"(?:1[89]|2[01])\d\d")


@dataclass(frozen=True)
class Figure:
    kind: str  # money, count, percent or duration
    value: Decimal  # in base units: 50000000 for "$50 million"
    unit: str  # USD/EUR/GBP, the thing counted, "%", or years/months/weeks/days
    text: str  # as printed: "$50 million"
    label: str  # what it is about ("reward"), or "" when nothing nearby says
    sentence: str
    # Named as the value before another ("to $25 million, up from $15 million").
    earlier: bool = False


def figures_in(text: str) -> list[Figure]:
    """Every figure in `text`, in reading order, each with the sentence it stands in.

    The patterns run over the whole text at once (in C, not a Python loop per sentence); a
    figure never spans two sentences, since each pattern needs a space or nothing after it."""
    spans: list[tuple[int, int, str, Decimal, str]] = []
    taken: list[tuple[int, int]] = []

    def add(found: re.Match[str], kind: str, value: Decimal | None, unit: str) -> None:
        start, end = found.span()
        if value is not None and all(end <= s or start >= e for s, e in taken):
            taken.append((start, end))
            spans.append((start, end, kind, value, unit))

    # The patterns that begin with a number are tried only where a number begins, instead of
    # every pattern trying every word.
    lowered = _lowered(text)
    numbers = _number_starts(text, lowered)
    money = _money_signs(text, lowered)
    if not numbers and not money:
        return []  # the common case for a title or a short summary
    found_at: tuple[list[re.Match[str]], ...] = ([], [], [], [])
    for at in numbers:
        for pattern, matches in zip(_AT_NUMBERS, found_at, strict=True):
            if (match := pattern.match(text, at)) is not None:
                matches.append(match)
    money_words, percents, durations, counts = found_at

    for found in (*money, *money_words):
        currency = found["cur"].strip().lower()
        unit = _CURRENCY_SIGNS.get(currency) or _CURRENCY_WORDS.get(currency, "USD")
        add(found, MONEY, _value(found["num"], found["scale"]), unit)
    for found in percents:
        add(found, PERCENT, _value(found["num"], None), "%")
    for found in durations:
        unit = _DURATION_UNITS[_singular(found["unit"].lower())]
        add(found, DURATION, _value(found["num"], None), unit)
    for found in counts:
        noun = found["noun"]
        if noun.lower() not in _NOT_COUNTED and _countable(text, found):
            add(found, COUNT, _value(found["num"], found["scale"]), noun.lower())
    if not spans:
        return []
    spans.sort()
    bounds = sentence_spans(text)
    starts = [start for start, _ in bounds]
    figures = []
    for start, end, kind, value, unit in spans:
        first, last = bounds[max(bisect_right(starts, start) - 1, 0)]
        sentence = text[first:last]
        at, until = start - first, end - first
        figures.append(
            Figure(
                kind,
                value,
                unit,
                text[start:end],
                unit if kind == COUNT else _label(sentence, at, until, kind),
                sentence,
                bool(_EARLIER.search(sentence, 0, at)),
            )
        )
    return figures


def _lowered(text: str) -> str | None:
    """`text` in lower case, character for character, such that a lower-case word occurs in it
    exactly where a case-insensitive pattern finds the word in `text`; None if no such text."""
    if text.isascii():
        return text.lower()
    if any(trap in text for trap in _CASE_TRAPS):
        return None
    return text.lower()


def _number_starts(text: str, lowered: str | None) -> list[int]:
    """Where `_NUMBER.finditer(text)` finds numbers, without running that pattern over every
    character, which was most of the cost of reading figures (issue 5)."""
    if lowered is None:
        return [found.start() for found in _NUMBER.finditer(text)]
    if text.isascii():
        skeleton = b" " + text.encode("ascii").translate(_SKELETON)
        places = (place.start() for place in _SKELETON_PLACE.finditer(skeleton))
    else:
        places = (place.start() for place in _NUMBER_PLACE.finditer(lowered))
    return [found.start() for found in _matches_at(_NUMBER, text, places)]


def _money_signs(text: str, lowered: str | None) -> list[re.Match[str]]:
    """`_MONEY_SIGN.finditer(text)`, tried only where a currency is named: at its sign (or
    the "US" before a "$"), or at "USD" or "EUR" in any case."""
    if lowered is None:
        return list(_MONEY_SIGN.finditer(text))
    places = []
    for sign in "$€£":
        at = text.find(sign)
        while at != -1:
            if sign == "$" and at >= 2 and lowered.startswith("us", at - 2):
                places.append(at - 2)
            places.append(at)
            at = text.find(sign, at + 1)
    for code in ("usd", "eur"):
        at = lowered.find(code)
        while at != -1:
            places.append(at)
            at = lowered.find(code, at + 1)
    places.sort()
    return _matches_at(_MONEY_SIGN, text, places)


def _matches_at(pattern: re.Pattern[str], text: str, places: Iterable[int]) -> list[re.Match[str]]:
    """What `pattern.finditer(text)` finds, given `places` (in order): every place where one
    of its matches could begin. The pattern is tried there only, each match hiding the places
    it covers, as finditer's would."""
    found = []
    covered = 0
    for at in places:
        if at >= covered and (match := pattern.match(text, at)) is not None:
            found.append(match)
            covered = match.end()
    return found


def _countable(text: str, found: re.Match[str]) -> bool:
    number = found["num"]
    # "Aug. 14 investors" is a date, not a count.
    if _MONTHS.search(text, max(0, found.start() - 12), found.start()):
        return False
    # A bare four-digit year ("in 2020 prosecutors") counts nothing.
    return not _YEAR.fullmatch(number)


def _singular(unit: str) -> str:
    for singular in _DURATION_UNITS:
        if unit == singular or unit.rstrip("s") == singular or unit.startswith(singular):
            return singular
    return unit.rstrip("s")


def _value(number: str, scale: str | None) -> Decimal | None:
    text = number.lower().replace(",", "")
    if text.startswith("a "):
        text = text[2:]
    try:
        if "-" in text:
            tens, ones = text.split("-", 1)
            base = Decimal(_WORD_NUMBERS[tens] + _WORD_NUMBERS[ones])
        elif text in _WORD_NUMBERS:
            base = Decimal(_WORD_NUMBERS[text])
        else:
            base = Decimal(text)
    except (KeyError, InvalidOperation):
        return None
    if scale:
        base *= _SCALES[scale.lower()]
    return Decimal(int(base)) if base == base.to_integral() else base.normalize()


# Labels that only ever describe one kind of figure: a prison "sentence" is a duration, a
# share of "territory" a percentage; the rest are sums of money.
_LABEL_KINDS = {
    "sentence": DURATION,
    "territory": PERCENT,
    "growth": PERCENT,
    "production": PERCENT,
}


def _fits(label: str, kind: str) -> bool:
    return bool(label) and _LABEL_KINDS.get(label, MONEY) == kind


def _label(sentence: str, start: int, end: int, kind: str) -> str:
    """The label word nearest to the figure within a few words (after it, on a tie); else
    the sentence's only label, however far ("raised its reward for information leading to
    the arrest of ... to $25 million"). Only labels that fit the kind of figure count."""
    before, after = _lower_words(sentence[:start]), _lower_words(sentence[end:])
    if _LABELS.keys().isdisjoint(before) and _LABELS.keys().isdisjoint(after):
        return ""  # most sentences: no label at all
    for distance in range(_LABEL_WINDOW):
        for words, index in ((after, distance), (before, len(before) - 1 - distance)):
            if 0 <= index < len(words) and _fits(_LABELS.get(words[index], ""), kind):
                return _LABELS[words[index]]
    labels = {_LABELS[word] for word in before + after if _fits(_LABELS.get(word, ""), kind)}
    return labels.pop() if len(labels) == 1 else ""


def _lower_words(text: str) -> list[str]:
    """The words of `text`, lower-cased: the text is lower-cased whole, which is faster than
    word by word and reads the same labels (only a Greek final sigma may differ), unless it
    holds "İ", whose lower case is two characters and can split a word."""
    if "\u0130" in text:
        return [word.lower() for word in _TOKEN.findall(text)]
    return _TOKEN.findall(text.lower())


def format_value(kind: str, value: Decimal, unit: str) -> str:
    """A figure written back the way news writes it: "$50 million", "600 investors", "60%"."""
    if kind == MONEY:
        sign = {"USD": "$", "EUR": "€", "GBP": "£"}.get(unit, unit + " ")
        for size, word in ((10**12, "trillion"), (10**9, "billion"), (10**6, "million")):
            if abs(value) >= size:
                return f"{sign}{_plain(value / size)} {word}"
        return f"{sign}{value:,.0f}" if value == value.to_integral() else f"{sign}{value:,.2f}"
    if kind == PERCENT:
        return f"{_plain(value)}%"
    if kind == DURATION:
        return f"{_plain(value)} {unit if value != 1 else unit.rstrip('s')}"
    return f"{_plain(value)} {unit}"


def _plain(value: Decimal) -> str:
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
