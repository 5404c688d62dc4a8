"""Loading and checking feeds.yaml: the feeds to poll and the storylines to follow.

Every problem in the file is reported, one self-contained line each, naming the file, the
entry and the field: `feeds.yaml: feeds[2].interval: '5 minuts' is not a duration`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

# libyaml's parser where PyYAML was built with it: the pure-Python one took up to a tenth of a
# second on a feeds.yaml of 200 feeds, read again at every poll round.
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # a PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

from tracker.errors import ConfigError

DEFAULT_INTERVAL = timedelta(minutes=15)
MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=365)
# Lower-case letters, digits and dashes: ids appear in stream names, URLs and shell commands.
_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class FeedConfig:
    id: str
    url: str
    title: str
    interval: timedelta = DEFAULT_INTERVAL
    enabled: bool = True


@dataclass(frozen=True)
class StorylineRules:
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorylineConfig:
    id: str
    title: str
    match: StorylineRules


@dataclass(frozen=True)
class Config:
    path: Path
    feeds: tuple[FeedConfig, ...] = ()
    storylines: tuple[StorylineConfig, ...] = field(default=())

    def feed(self, feed_id: str) -> FeedConfig | None:
        return next((feed for feed in self.feeds if feed.id == feed_id), None)


def parse_duration(text: str) -> timedelta | None:
    """`15m`, `1h30m`, `90s`, `2d`; None if it is not one (a bare number has no unit)."""
    text = text.strip().lower()
    if not text or not re.fullmatch(rf"(?:{_DURATION_PART.pattern}\s*)+", text):
        return None
    seconds = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds > MAX_INTERVAL.total_seconds():
        return MAX_INTERVAL + timedelta(seconds=1)  # past timedelta's range too: just "too long"
    return timedelta(seconds=seconds)


def load_config(path: Path) -> Config:
    """Read and check feeds.yaml; raise ConfigError listing every problem found."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{name}: file not found (set --config or TRACKER_CONFIG)"]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{name}: cannot be read: {error}"]) from None
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError([f"{name}: {where}not valid YAML: {problem}"]) from None
    checker = _Checker(name)
    config = checker.document(path, document)
    if checker.problems:
        raise ConfigError(checker.problems)
    return config


_HOST = re.compile(r"[A-Za-z0-9.\-_~%]+|\[[0-9A-Fa-f:.]+\]")


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is no number or out of range
    except ValueError:
        return False
    host = parts.netloc.rpartition("@")[2]
    if port is not None or host.endswith(":"):
        host = host.rsplit(":", 1)[0]
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and bool(_HOST.fullmatch(host))
        and not any(c.isspace() for c in url)
    )


class _StrictLoader(_SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _show(value: Any) -> str:
    """A YAML value as the user wrote it, not as Python prints it."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class _Checker:
    """Walks the parsed document, collecting problems instead of stopping at the first."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(
            f"{self.file_name}: {where}: {message}" if where else f"{self.file_name}: {message}"
        )

    def document(self, path: Path, document: Any) -> Config:
        if document is None:
            document = {}
        if not isinstance(document, dict):
            self.problem("", "must be a mapping with 'feeds' and 'storylines'")
            return Config(path)
        self._unknown_keys("", document, {"feeds", "storylines"})
        feeds = self._entries(document, "feeds", self.feed)
        storylines = self._entries(document, "storylines", self.storyline)
        return Config(path, tuple(feeds), tuple(storylines))

    def _entries(
        self, document: dict[str, Any], key: str, check: Callable[[str, dict[str, Any]], Any]
    ) -> list[Any]:
        entries = document.get(key)
        if entries is None:
            return []
        if not isinstance(entries, list):
            self.problem(key, "must be a list")
            return []
        checked, seen = [], set()
        for index, entry in enumerate(entries):
            where = f"{key}[{index}]"
            if not isinstance(entry, dict):
                self.problem(where, "must be a mapping")
                continue
            entry_id = entry.get("id")
            duplicate = isinstance(entry_id, str) and entry_id in seen
            item = check(where, entry)
            if duplicate:
                self.problem(f"{where}.id", f"{entry_id!r} is used by an earlier entry")
                continue
            if isinstance(entry_id, str):
                seen.add(entry_id)
            if item is not None:
                checked.append(item)
        return checked

    def feed(self, where: str, entry: dict[str, Any]) -> FeedConfig | None:
        self._unknown_keys(where, entry, {"id", "title", "url", "interval", "enabled"})
        before = len(self.problems)
        feed_id = self._id(where, entry)
        url = self._required_text(where, entry, "url")
        if url is not None and not _is_http_url(url):
            self.problem(f"{where}.url", f"{url!r} is not an http(s) URL")
        title = self._optional_text(where, entry, "title")
        interval = DEFAULT_INTERVAL
        if "interval" in entry:
            raw = entry["interval"]
            parsed = parse_duration(raw) if isinstance(raw, str) else None
            if isinstance(raw, int) and not isinstance(raw, bool):
                self.problem(
                    f"{where}.interval", f"{raw} has no unit (write e.g. {raw}s, {raw}m or {raw}h)"
                )
            elif parsed is None:
                self.problem(f"{where}.interval", f"{_show(raw)} is not a duration (e.g. 15m, 1h)")
            elif parsed < MIN_INTERVAL:
                self.problem(f"{where}.interval", f"{raw!r} is shorter than 1s")
            elif parsed > MAX_INTERVAL:
                self.problem(f"{where}.interval", f"{raw!r} is longer than 365d")
            else:
                interval = parsed
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(f"{where}.enabled", f"{_show(enabled)} is not true or false")
        if len(self.problems) > before or feed_id is None or url is None:
            return None
        return FeedConfig(feed_id, url, title or feed_id, interval, enabled)

    def storyline(self, where: str, entry: dict[str, Any]) -> StorylineConfig | None:
        self._unknown_keys(where, entry, {"id", "title", "match"})
        before = len(self.problems)
        storyline_id = self._id(where, entry)
        title = self._optional_text(where, entry, "title")
        match = entry.get("match")
        rules = StorylineRules()
        if match is None:
            self.problem(f"{where}.match", "is required: a mapping with any/all/none term lists")
        elif not isinstance(match, dict):
            self.problem(f"{where}.match", "must be a mapping with any/all/none term lists")
        else:
            self._unknown_keys(f"{where}.match", match, {"any", "all", "none"})
            terms = {
                key: self._terms(f"{where}.match.{key}", match.get(key, []))
                for key in ("all", "any", "none")
            }
            if not terms["all"] and not terms["any"]:
                self.problem(f"{where}.match", "needs at least one 'any' or 'all' term")
            rules = StorylineRules(terms["all"], terms["any"], terms["none"])
        if len(self.problems) > before or storyline_id is None:
            return None
        return StorylineConfig(storyline_id, title or storyline_id, rules)

    def _terms(self, where: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.problem(where, "must be a list of words or phrases")
            return ()
        terms = []
        for index, term in enumerate(value):
            if not isinstance(term, str) or not term.strip():
                self.problem(f"{where}[{index}]", f"{_show(term)} is not a word or phrase")
            else:
                terms.append(term.strip())
        return tuple(terms)

    def _id(self, where: str, entry: dict[str, Any]) -> str | None:
        value = entry.get("id")
        if value is None:
            self.problem(f"{where}.id", "is required")
            return None
        if not isinstance(value, str) or not _ID.match(value):
            self.problem(
                f"{where}.id",
                f"{value!r} is not a valid id (lower-case letters, digits and dashes)",
            )
            return None
        return value

    def _required_text(self, where: str, entry: dict[str, Any], key: str) -> str | None:
        if entry.get(key) is None:
            self.problem(f"{where}.{key}", "is required")
            return None
        return self._optional_text(where, entry, key)

    def _optional_text(self, where: str, entry: dict[str, Any], key: str) -> str | None:
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{where}.{key}", f"{_show(value)} is not a non-empty string")
            return None
        return value.strip()

    def _unknown_keys(self, where: str, entry: dict[str, Any], known: set[str]) -> None:
        for key in entry:
            if key not in known:
                place = f"{where}.{key}" if where else str(key)
                self.problem(place, f"unknown field (expected one of: {', '.join(sorted(known))})")
