"""The small extractors for news copy: sentences, figures, names, summaries, word diffs."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from helpers import REPO_ROOT
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tracker import amounts
from tracker import sentences as sentences_module
from tracker.amounts import figures_in, format_value
from tracker.diffing import render, word_diff
from tracker.names import entities_in
from tracker.sentences import sentences
from tracker.summary import SourceText, summarise
from tracker.views.extracts import article_sentences_text

SEED = REPO_ROOT.parent / "shared" / "seed" / "page.md"


def test_sentences_do_not_end_at_abbreviations_initials_or_decimals() -> None:
    text = (
        "Aug. 14 (UPI) -- Venezuelan President Nicolás Maduro spoke. The U.S. State Department "
        'offered $1.3 million. Efrain Betancourt Jr. pleaded guilty in May. "We lost it all," '
        "one said. It was 9 a.m. Tuesday."
    )
    assert sentences(text) == [
        "Aug. 14 (UPI) -- Venezuelan President Nicolás Maduro spoke.",
        "The U.S. State Department offered $1.3 million.",
        "Efrain Betancourt Jr. pleaded guilty in May.",
        '"We lost it all," one said.',
        "It was 9 a.m. Tuesday.",
    ]
    assert sentences("") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "the announcement of a $50 million reward for information",
            [("money", 50_000_000, "USD", "reward")],
        ),
        ("The reward for Bin Laden was $25 million.", [("money", 25_000_000, "USD", "reward")]),
        (
            "annual profits of between $10m and $15m",
            [("money", 10_000_000, "USD", "profits"), ("money", 15_000_000, "USD", "profits")],
        ),
        ("EE.UU. ofrece US$25 millones de recompensa", [("money", 25_000_000, "USD", "reward")]),
        ("a $1.3 million investment in Sky Group", [("money", 1_300_000, "USD", "investment")]),
        ("about 600 Venezuelan-American investors", [("count", 600, "investors", "investors")]),
        ("the gang has 5,000 members", [("count", 5000, "members", "members")]),
        ("4.5 million militia members", [("count", 4_500_000, "members", "members")]),
        ("more than 60% of Guyana's territory", [("percent", 60, "%", "territory")]),
        ("the economy grew 43.6 percent", [("percent", Decimal("43.6"), "%", "growth")]),
        ("a seven-year prison sentence", [("duration", 7, "years", "sentence")]),
        ("sentenced to nine months", [("duration", 9, "months", "sentence")]),
        # Not figures: ages, dates, years, times ago.
        ("Betancourt, 36 years old, appeared", []),
        ("Aug. 14 investors met", []),
        ("In 2020 prosecutors charged him", []),
        ("three years ago", []),
        ("about $30", [("money", 30, "USD", "")]),
    ],
)
def test_figures_are_read_as_news_writes_them(
    text: str, expected: list[tuple[str, object, str, str]]
) -> None:
    found = [(f.kind, f.value, f.unit, f.label) for f in figures_in(text)]
    assert found == [(k, Decimal(v), u, label) for k, v, u, label in expected]  # type: ignore[arg-type]


def test_a_figure_named_as_the_earlier_value_is_marked() -> None:
    found = figures_in("The reward rose to $25 million, up from $15 million.")
    assert [(f.text, f.earlier) for f in found] == [("$25 million", False), ("$15 million", True)]


def test_figures_are_written_back_the_usual_way() -> None:
    assert format_value("money", Decimal(50_000_000), "USD") == "$50 million"
    assert format_value("money", Decimal(1_300_000), "USD") == "$1.3 million"
    assert format_value("money", Decimal(60_000), "USD") == "$60,000"
    assert format_value("count", Decimal(600), "investors") == "600 investors"
    assert format_value("percent", Decimal("43.6"), "%") == "43.6%"
    assert format_value("duration", Decimal(1), "years") == "1 year"


def test_names_are_people_places_and_organisations_with_counts() -> None:
    text = (
        "Venezuelan President Nicolás Maduro renewed his claim. U.S. District Judge Darrin "
        "Gayles sentenced Efrain Betancourt Jr. to seven years. Maduro said the Essequibo is "
        "Venezuela's. The State Department and the International Court of Justice in The Hague "
        "disagreed. Guyana President Irfaan Ali spoke in Georgetown. The SEC sued Sky Group USA."
    )
    found = {(e.name, e.kind): e.count for e in entities_in([text])}
    assert found[("Nicolás Maduro", "person")] == 2  # the surname counts for the full name
    assert found[("Darrin Gayles", "person")] == 1
    assert found[("Efrain Betancourt", "person")] == 1
    assert found[("Irfaan Ali", "person")] == 1
    assert found[("Guyana", "place")] == 1
    assert found[("Essequibo", "place")] == 1
    assert found[("United States", "place")] == 1
    assert found[("The Hague", "place")] == 1
    assert found[("State Department", "organisation")] == 1
    assert found[("International Court of Justice", "organisation")] == 1
    assert found[("SEC", "organisation")] == 1
    assert found[("Sky Group USA", "organisation")] == 1
    # Demonyms and sentence-initial words are no names.
    assert not any(name in ("Venezuelan", "The", "President") for name, _ in found)


def test_spellings_of_one_name_are_one_entity() -> None:
    found = entities_in(["Nicolas Maduro spoke. Nicolás Maduro spoke again. Nicolás Maduro left."])
    assert [(e.name, e.count) for e in found] == [("Nicolás Maduro", 3)]


def _article(article_id: str, day: int, source: str, content: str) -> SourceText:
    return SourceText(article_id, source, datetime(2025, 8, day, tzinfo=UTC), "", "", content)


def test_the_summary_takes_central_recent_sentences_once_across_outlets() -> None:
    wire = (
        "The United States doubled its reward for information leading to the arrest of "
        "Nicolás Maduro to $50 million on Thursday."
    )
    articles = [
        _article("a", 7, "UPI", wire + " Officials gave no other details about the offer today."),
        _article("b", 8, "The Hill", wire),  # the same wire copy in another outlet
        _article(
            "c",
            9,
            "Miami Herald",
            "Exiles in Doral said the $50 million reward for Maduro was long overdue. "
            "The weather in Miami was hot and humid all weekend long for everyone there.",
        ),
    ]
    chosen = summarise(articles, count=3)
    texts = [c.text for c in chosen]
    assert texts.count(wire) == 1
    assert len({c.article_id for c in chosen}) == len(chosen)
    assert "weather" not in " ".join(texts[:2])


def test_the_summary_is_the_same_whatever_the_hash_seed() -> None:
    program = (
        "import json, yaml\n"
        "from datetime import datetime, UTC\n"
        "from tracker.summary import SourceText, summarise\n"
        "from tracker.names import entities_in\n"
        "articles = yaml.safe_load(open('tests/data/labelled/articles.yaml'))['articles']\n"
        "texts = [SourceText(a['id'], a['source'], a['published'], a['title'], a['summary'],"
        " a['content']) for a in articles]\n"
        "print(json.dumps([c.text for c in summarise(texts, 5)]))\n"
        "print(json.dumps([(e.name, e.count) for a in articles for e in "
        "entities_in([a['title'], a['summary'], a['content']])]))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            check=True,
        ).stdout
        for seed in ("0", "1", "4242")
    }
    assert len(outputs) == 1


def test_word_diff_marks_removed_and_added_words() -> None:
    pieces = word_diff(
        "State Department doubles reward for Maduro to $50 million",
        "Bondi announces $50 million reward for Maduro,  doubling US offer",
    )
    assert render(pieces) == (
        "[-State Department doubles-] {+Bondi announces $50 million+} reward for "
        "[-Maduro to $50 million-] {+Maduro, doubling US offer+}"
    )
    assert word_diff("same  words", "same words") == [pieces[0].__class__("same", "same words")]
    long = " ".join(f"w{n}" for n in range(40))
    shortened = render(word_diff(long + " old", long + " new"), context=3)
    assert shortened == "… w37 w38 w39 [-old-] {+new+}"


# Pieces of news copy where figures begin, in any case, with the characters that case-blind
# matching treats specially (İ ı ſ and the Kelvin sign), for the scanners' property tests.
_PIECES_TEXT = """
    one two three four five six seven eight nine ten eleven twelve thirteen fifteen sixteen
    twenty thirty forty fifty sixty seventy eighty ninety twenty-one seventy-five someone often
    weight tenants sixth nineteen fourteen eighteen 1 12 1,000 3.5 2020 0 ٣ $ US$ us$ US$25 5 €
    £ USD usd EUR eur Euro europe million bn percent % years from previously about a an reward
    sentence fine fıve ſix ſeven uſd ſixty sİx İ ı ſ \u212a é Ñ
"""
_PIECES = (*_PIECES_TEXT.split(), "a dozen", "a hundred", "A Dozen")
_GAPS = (" ", "  ", "", "-", ".", ",", "\n", "'", "(", "$", "_")
news_copy = st.lists(
    st.tuples(
        st.sampled_from(_PIECES),
        st.sampled_from(("lower", "upper", "title", "swapcase")),
        st.sampled_from(_GAPS),
    ),
    max_size=25,
).map(lambda parts: "".join(getattr(piece, case)() + gap for piece, case, gap in parts))


@settings(max_examples=1000)
@given(st.one_of(news_copy, st.text()))
@example("sixty a dozen ſix fıve 1,000 twenty-one")
def test_numbers_are_found_where_the_number_pattern_finds_them(text: str) -> None:
    expected = [found.start() for found in amounts._NUMBER.finditer(text)]
    assert amounts._number_starts(text, amounts._lowered(text)) == expected


@settings(max_examples=1000)
@given(st.one_of(news_copy, st.text()))
@example("US$25, uſd 5, EUR 3, €4 and £5")
def test_currencies_are_found_where_the_money_pattern_finds_them(text: str) -> None:
    expected = [found.span() for found in amounts._MONEY_SIGN.finditer(text)]
    found = amounts._money_signs(text, amounts._lowered(text))
    assert [match.span() for match in found] == expected


@given(st.one_of(news_copy, st.text()), st.integers(0, 60), st.integers(0, 60))
def test_the_word_before_a_period_is_what_the_pattern_finds(
    text: str, start: int, end: int
) -> None:
    end = min(end, len(text))  # as sentence_spans asks: a period's place, after the start
    start = min(start, end)
    found = re.compile(r"(\S+)$").search(text, start, end)
    assert sentences_module._word_before(text, start, end) == (found[1] if found else "")


@given(st.one_of(news_copy, st.text()))
def test_the_words_of_a_sentence_name_the_same_labels_however_they_are_lower_cased(
    text: str,
) -> None:
    word_by_word = [word.lower() for word in amounts._TOKEN.findall(text)]
    expected = [amounts._LABELS.get(word) for word in word_by_word]
    assert [amounts._LABELS.get(word) for word in amounts._lower_words(text)] == expected


@given(st.text(alphabet=" \n\tab."), st.text(alphabet=" \n\tab."))
def test_a_summary_is_left_out_when_the_content_repeats_it_whatever_the_spacing(
    summary: str, content: str
) -> None:
    repeats = " ".join(summary.split()) in " ".join(content.split())
    expected = ["Title", *([summary] if summary and not repeats else []), content]
    assert article_sentences_text("Title", summary, content) == [t for t in expected if t]
