"""People, places and organisations named in news text. Pure functions, no model.

No named-entity model installs from PyPI here, so this reads names the way a sub-editor skims:
runs of capitalised words, with titles ("President", "Judge") marking people, a gazetteer and
keywords ("Department", "Court", "River") marking places and organisations, and a surname on
its own counted for the full name it stands for earlier in the same article. It is small and
deterministic, and errs towards leaving a name out rather than inventing one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain

PERSON = "person"
PLACE = "place"
ORGANISATION = "organisation"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PLACE_NAMES = """
Venezuela|Guyana|Colombia|Brazil|Chile|Peru|Ecuador|Bolivia|Argentina|Uruguay|Paraguay|Mexico
Panama|Cuba|Nicaragua|Honduras|Guatemala|El Salvador|Costa Rica|Haiti|Dominican Republic
Puerto Rico|Jamaica|Trinidad|Trinidad and Tobago|Suriname|Barbados|United States|America
U.S.|US|USA|Canada|Spain|Portugal|France|Italy|Germany|Netherlands|Britain|Great Britain
United Kingdom|UK|England|Russia|China|Iran|Iraq|Syria|Israel|Turkey|India|Japan|Ukraine
Europe|Africa|Asia|Nigeria|Qatar|United Arab Emirates|UAE|Norway|Latin America|South America
North America|Central America|Caribbean|Western Hemisphere|Essequibo|Guayana Esequiba
Esequibo|Aragua|Bolivar|Bolívar|Zulia|Táchira|Orinoco|Cuyuní|Cuyuni|Amazon|Tocorón|Caracas
Maracaibo|Georgetown|Bogotá|Bogota|Havana|Quito|Lima|Santiago|Brasília|Brasilia|Buenos Aires
Panama City|Mexico City|Madrid|London|Paris|Brussels|Geneva|The Hague|Hague|Moscow|Beijing
Washington|New York|Los Angeles|Houston|Chicago|Boston|Atlanta|Dallas|Texas|Florida|Illinois
California|Georgia|Arizona|Virginia|New Jersey|Miami|Doral|Hialeah|Coral Gables|Miami Beach
Miami-Dade|Broward|Palm Beach|West Palm Beach|Boca Raton|Fort Lauderdale|Orlando|Tampa
Jacksonville|Key Biscayne|Weston|Kendall|South Florida|Biscayne Boulevard|French Riviera
French Guiana|Venezuela's|Guyana's
"""
_PLACE_KEYWORDS = _words(
    "River Island Islands Province County City Beach Boulevard Avenue Street Bay Ocean Sea "
    "Gulf Mountains Coast Region Valley Strait Airport Park Lake"
)
_ORGANISATION_NAMES = """
Tren de Aragua|Cartel de los Soles|Sky Group|Sky Group USA|ExxonMobil|Exxon|Hess|Chevron
CNOOC|Caricom|CARICOM|Mercosur|Reuters|Hezbollah|Hamas|Interpol|NATO|OPEC|PDVSA|Citgo
Chavismo|BBC|UPI|NBC|CNN|The Hill|Miami Herald|el Nuevo Herald|The Guardian|Carter Center
Rewards for Justice|Narcotics Rewards Program|State Department|Justice Department
"""
_ORGANISATION_KEYWORDS = _words(
    "Department Court Commission Agency Party Ministry Council Bank University Association "
    "Organization Organisation Center Centre Cartel Group Corp Corp. Corporation Inc Inc. LLC "
    "Company Institute Fund Office Senate Congress Army Navy Guard Police Union Nations "
    "Community Treasury Pentagon Administration Service Services Bureau Foundation Program "
    "Programme Commonwealth Network News Times Post Herald Airlines Airways Capital Holdings "
    "Partners Securities Exchange Reserve Board Committee Assembly Tribunal Authority "
    "Protection Force Forces Club League Church Academy College School Hospital"
)
# Words that name a role: what follows is a person ("President Irfaan Ali").
_TITLES = _words(
    "President Vice Judge District Attorney General Secretary Sen. Senator Rep. Representative "
    "Gov. Governor Mayor Minister Prime Chief Justice Assistant Mr. Mrs. Ms. Dr. Gen. Lt. "
    "Col. Capt. Sgt. Officer Agent Detective Prosecutor Deputy Commissioner Ambassador Pope "
    "King Queen Prince Sheriff Director CEO Chairman Dictator Leader Lawyer Attorney-General "
    "Foreign Defense Defence Interior Finance Energy Commander Admiral Colonel Captain Sergeant "
    "State Presidente Fiscal Juez Canciller Ministro Diputado"
)
_DEMONYMS = _words(
    "Venezuelan Venezuelans Guyanese Colombian Colombians American Americans Brazilian "
    "Brazilians Chilean Chileans Cuban Cubans Mexican Mexicans Peruvian Ecuadorian Nicaraguan "
    "Panamanian Russian Chinese Iranian British Spanish English European Latino Latinos Latina "
    "Hispanic Chavista Chavistas Haitian Haitians Salvadoran Dominican Trinidadian Surinamese "
    "Venezolano Venezolanos Venezolana Guyanés Estadounidense"
)
# Capitalised words that are no name on their own (sentence starts, months, days).
_NOT_NAMES = _words(
    "The A An In On At But And Or If As For With By From Now Here This That These Those It Its "
    "He She They We I You His Her Their Our My After Before While When Where What Who Whom Why "
    "How Some Most Many Others Other Last Next Upon According Both Such Since Until Also Still "
    "Yet There Then Today Yesterday Tomorrow No Not All Any Each Every One Two Three Four Five "
    "Six Seven Eight Nine Ten Monday Tuesday Wednesday Thursday Friday Saturday Sunday January "
    "February March April May June July August September October November December Jan Feb "
    "Mar Apr Jun Jul Aug Sept Sep Oct Nov Dec El La Los Las Un Una En Por Para Con De Del Y Que "
    "Según Photo File Opinion Editor Analysts Officials Prosecutors Investors Victims Numbers "
    "Rewards Meanwhile However Despite Under Over Among Against Without Within During Though "
    "Although Because Instead Even Just Only Again Once Later Earlier Shortly Dozens Hundreds "
    "Thousands Millions Operation Act Day Week Month Year Breaking Update Updated Live Watch "
    "Read More Exclusive Analysis Explainer Sources Residents Critics Supporters Lawyers Experts "
    "Former Ex Late"
)
_CONNECTORS = _words("de del la los las da do dos van von bin al of and y")
_SUFFIXES = _words("Jr. Jr Sr. Sr II III")
_CAPITAL = r"[A-ZÀ-ÖØ-Þ][\w'’.\-]*"
_RUN = re.compile(
    rf"{_CAPITAL}(?:[ \t]+(?:(?:de|del|la|los|las|da|do|dos|van|von|bin|al|of|and|y)[ \t]+)*"
    rf"{_CAPITAL})*"
)


def _names(block: str) -> frozenset[str]:
    return frozenset(n.strip() for line in block.strip().splitlines() for n in line.split("|"))


_PLACE_SET = _names(_PLACE_NAMES) - {"Venezuela's", "Guyana's"}
_ORGANISATION_SET = _names(_ORGANISATION_NAMES)


@dataclass(frozen=True)
class Entity:
    name: str
    kind: str  # person, place or organisation
    count: int


@lru_cache(maxsize=1 << 15)
def key(name: str) -> str:
    """Two spellings of one name share a key: "Nicolás Maduro" and "Nicolas Maduro"."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.findall(r"\w+", bare.casefold()))


def entities_in(texts: Iterable[str]) -> list[Entity]:
    """The names in one article's texts (title, summary, content), with how often each occurs.

    Sorted by count (most first), then name, so the result never depends on hashing.
    """
    mentions: list[tuple[str, str]] = []  # (name, kind) in reading order
    for text in texts:
        mentions.extend(_mentions(text))
    people = sorted({name for name, kind in mentions if kind == PERSON})
    # Per (key, kind): how often each spelling was written in full, and the mentions in all.
    spellings: dict[tuple[str, str], dict[str, int]] = {}
    totals: dict[tuple[str, str], int] = {}
    # The article's people by the last word of their key, each with all its words.
    keyed: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for person in people:
        words = tuple(key(person).split())
        if words:
            keyed.setdefault(words[-1], []).append((words, person))
    fuller: dict[str, str | None] = {}  # a name is looked up once however often it recurs
    for name, kind in mentions:
        written = True
        if kind in (PERSON, "surname"):
            # "Maduro" or "Guerrero Flores" stands for the one fuller name that ends so.
            if name not in fuller:
                fuller[name] = _full_name(name, keyed) if keyed else None
            full = fuller[name]
            if full is None and kind == "surname":
                continue
            written = full is None
            name, kind = full or name, PERSON
        entry = (key(name), kind)
        counts = spellings.get(entry)
        if counts is None:
            counts = spellings[entry] = {}
        counts[name] = counts.get(name, 0) + written
        totals[entry] = totals.get(entry, 0) + 1
    found = []
    for entry, counts in spellings.items():
        display = min(counts, key=lambda n: (-counts[n], n))
        found.append(Entity(display, entry[1], totals[entry]))
    return sorted(found, key=lambda e: (-e.count, e.name, e.kind))


def _full_name(name: str, people: dict[str, list[tuple[tuple[str, ...], str]]]) -> str | None:
    """The one fuller name (by key: spellings alike) that `name` ends like, if just one;
    `people` are the article's people, sorted, by the last word of their key."""
    words = tuple(key(name).split())
    if not words:
        return None
    longer: dict[tuple[str, ...], str] = {}
    for folded, person in people.get(words[-1], ()):  # sorted: a key's first spelling stands
        if len(folded) > len(words) and folded[-len(words) :] == words:
            longer.setdefault(folded, person)
    return next(iter(longer.values())) if len(longer) == 1 else None


def _mentions(text: str) -> list[tuple[str, str]]:
    """(name, kind) for each run of capitalised words in `text`, in reading order. The runs are
    found by one pattern over the whole text."""
    runs = [run for run in _RUN.findall(text) if len(run) <= _LONGEST_RUN]
    return [
        (name, kind)
        for name, kind in chain.from_iterable(map(_run_mentions, runs))
        if len(name) <= _LONGEST_NAME
    ]


# A run of capitalised words this long is no name (a headline in capitals, junk from a hostile
# feed): it is not read, nor kept in the cache below. Names are indexed, and PostgreSQL refuses
# an index entry over 2704 bytes.
_LONGEST_RUN = 1000
_LONGEST_NAME = 200


# The same runs recur from article to article ("The", "President Nicolás Maduro", "Guyana's"):
# each is read once (issue 5).
@lru_cache(maxsize=1 << 15)
def _run_mentions(run: str) -> tuple[tuple[str, str], ...]:
    """The names in one run of capitalised words: it ends at a possessive ("Maduro's") or at
    a sentence's final period."""
    found: list[tuple[str, str]] = []
    words: list[str] = []
    for token in run.split():
        bare = _bare(token)
        words.append(bare)
        ends_sentence = token.endswith(".") and not bare.endswith(".")
        if token.endswith(("'s", "’s")) or ends_sentence:
            found.extend(_classify(words))
            words = []
    found.extend(_classify(words))
    return tuple(found)


_KEEP_PERIOD = _words("Jr. Sr. Mr. Mrs. Ms. Dr. St. Gen. Lt. Col. Capt. Sgt. Sen. Rep. Gov.")


def _bare(token: str) -> str:
    """A token without possessive, trailing punctuation, a sentence's final period (but "U.S."
    and "Jr." keep theirs), or a prefix such as "ex-" ("ex-Sky Group USA")."""
    for prefix in ("Ex-", "ex-", "Former-"):
        if token.startswith(prefix) and len(token) > len(prefix):
            token = token[len(prefix) :]
    for ending in ("'s", "’s", "'", "’"):
        if token.endswith(ending):
            token = token[: -len(ending)]
    token = token.rstrip(",;:")
    if token.endswith(".") and token not in _KEEP_PERIOD and "." not in token[:-1]:
        token = token[:-1]
    return token


def _capitalised(token: str) -> bool:
    return bool(token) and token[0].isupper() and any(c.isalpha() for c in token)


def _classify(run: list[str]) -> list[tuple[str, str]]:
    """The names in one run of capitalised words: a title splits what is before it (a place,
    an organisation) from the person after it."""
    if not run:
        return []
    text = " ".join(run)
    known = _known(text)
    if known is not None:
        return [known]
    titles = [i for i, word in enumerate(run) if word in _TITLES]
    if titles and not any(word in _ORGANISATION_KEYWORDS for word in run):
        before, after = run[: titles[0]], run[titles[-1] + 1 :]
        while after and after[0] in _CONNECTORS | _TITLES:
            after = after[1:]
        person = _strip_suffix(after)
        found = _classify(before)
        if person and all(_capitalised(w) or w in _CONNECTORS for w in person):
            found.append((" ".join(person), PERSON))
        return found
    while run and (run[0] in _NOT_NAMES or run[0] in _DEMONYMS or run[0] in _CONNECTORS):
        run = run[1:]
    while run and run[-1] in _CONNECTORS:
        run = run[:-1]
    if not run:
        return []
    text = " ".join(run)
    known = _known(text)
    if known is not None:
        return [known]
    if any(word in _ORGANISATION_KEYWORDS for word in run):
        return [(text, ORGANISATION)]
    if run[-1] in _PLACE_KEYWORDS:
        return [(text, PLACE)]
    if len(run) == 1:
        word = run[0]
        if re.fullmatch(r"[A-Z][A-Z&]{1,9}", word) and word not in _PLACE_SET:
            return [(word, ORGANISATION)]  # an acronym: FBI, SEC, MS-13
        if word in _DEMONYMS or word in _NOT_NAMES or "-" in word:
            return []
        return [(word, "surname")]  # a name only if it stands for a full name nearby
    person = _strip_suffix(run)
    if any(word in _DEMONYMS or word.isupper() for word in person):
        return []
    if not 2 <= len(person) <= 4:
        return []
    return [(" ".join(person), PERSON)]


# One name for a place however it is written.
_ALIASES = {
    "U.S.": "United States",
    "US": "United States",
    "USA": "United States",
    "America": "United States",
    "UK": "United Kingdom",
    "Britain": "United Kingdom",
    "Great Britain": "United Kingdom",
    "Hague": "The Hague",
    "UAE": "United Arab Emirates",
    "Esequibo": "Essequibo",
    "CARICOM": "Caricom",
}


def _known(text: str) -> tuple[str, str] | None:
    text = _ALIASES.get(text, text)
    if text in _PLACE_SET:
        return text, PLACE
    if text in _ORGANISATION_SET:
        return text, ORGANISATION
    return None


def _strip_suffix(words: list[str]) -> list[str]:
    return words[:-1] if words and words[-1] in _SUFFIXES else words
