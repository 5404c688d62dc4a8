"""A short extractive summary of a storyline: a few sentences taken from its articles. Pure.

Sentences are scored by how central they are (how much of their vocabulary the storyline's
other sentences share: cosine similarity to the centroid of the rest) and how recent their
article is; the best few are taken, skipping any that repeats one already chosen (the same
wire copy in two outlets). Only dicts built in reading order are iterated, never sets, so the
floating-point sums, and the choice, are the same whatever PYTHONHASHSEED is.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tracker.matching import fold
from tracker.sentences import sentences

SENTENCES = 3
# Only the newest articles are read: the summary says where the story stands now, and a
# storyline of thousands of articles costs no more to summarise than one of forty.
RECENT_ARTICLES = 40
_MIN_WORDS, _MAX_WORDS = 8, 60
_REPEAT = 0.4  # Jaccard similarity of words at which a sentence repeats another
_RECENCY_DECAY = 0.15
_STOPWORDS_TEXT = """
    the a an and or but of to in on at for with by from as is was were be been being are it
    its this that these those he she they we you his her their our has have had not no than
    then there which who whom what when where why how will would could should may might can
    said says also after before about over into out up more most other some such only said de
    la el los las en y que por para del un una con se
"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SourceText:
    article_id: str
    source: str
    published_at: datetime
    title: str
    summary: str
    content: str


@dataclass(frozen=True)
class Chosen:
    text: str
    article_id: str
    source: str
    published_at: datetime


def summarise(articles: Sequence[SourceText], count: int = SENTENCES) -> list[Chosen]:
    """The `count` best sentences of the newest articles, best first."""
    newest = sorted(articles, key=lambda a: (a.published_at, a.article_id), reverse=True)
    candidates: list[tuple[int, int, str, SourceText, Counter[str]]] = []
    for rank, article in enumerate(newest[:RECENT_ARTICLES]):
        seen: set[str] = set()
        for index, sentence in enumerate(_sentences_of(article)):
            words = _words(sentence)
            total = sum(words.values())
            folded = fold(sentence)
            if not _MIN_WORDS <= len(sentence.split()) <= _MAX_WORDS or folded in seen or not total:
                continue
            seen.add(folded)
            candidates.append((rank, index, sentence, article, words))
    if not candidates:
        return []
    centroid: Counter[str] = Counter()
    for *_, words in candidates:
        centroid.update(words)
    scored = []
    for rank, index, sentence, article, words in candidates:
        rest = centroid.copy()
        rest.subtract(words)
        recency = 1.0 / (1.0 + _RECENCY_DECAY * rank)
        scored.append((-_cosine(words, rest) * recency, rank, index, sentence, article, words))
    scored.sort(key=lambda item: item[:3])
    chosen: list[tuple[str, SourceText, Counter[str]]] = []
    for _, _, _, sentence, article, words in scored:
        # One sentence an article, and none that another outlet's copy already said.
        if any(
            a.article_id == article.article_id or _jaccard(words, other) >= _REPEAT
            for _, a, other in chosen
        ):
            continue
        chosen.append((sentence, article, words))
        if len(chosen) == count:
            break
    return [Chosen(s, a.article_id, a.source, a.published_at) for s, a, _ in chosen]


def _sentences_of(article: SourceText) -> list[str]:
    texts = [article.summary] if fold(article.summary) not in fold(article.content) else []
    return [s for text in (*texts, article.content) for s in sentences(text)]


def _words(sentence: str) -> Counter[str]:
    return Counter(w for w in _WORD.findall(fold(sentence)) if len(w) > 2 and w not in _STOPWORDS)


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(count * b[word] for word, count in a.items() if b[word] > 0)
    norm_a = math.sqrt(sum(c * c for c in a.values()))
    norm_b = math.sqrt(sum(c * c for c in b.values() if c > 0))
    return dot / (norm_a * norm_b) if norm_a and norm_b else 0.0


def _jaccard(a: Counter[str], b: Counter[str]) -> float:
    union = len(a.keys() | b.keys())
    return len(a.keys() & b.keys()) / union if union else 0.0
