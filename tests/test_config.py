"""feeds.yaml: the shipped file is usable; every problem gets its own clear line (point 9)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import REPO_ROOT, run_tracker

from tracker.config import load_config, parse_duration
from tracker.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_the_shipped_feeds_yaml_is_valid_and_follows_the_three_storylines() -> None:
    config = load_config(REPO_ROOT / "feeds.yaml")
    assert len(config.feeds) >= 3
    assert {s.id for s in config.storylines} == {"essequibo", "maduro-reward", "sky-group"}
    upi = config.feed("upi-top")
    assert upi is not None and upi.url == "https://rss.upi.com/news/news.rss"
    assert upi.interval == timedelta(minutes=15) and upi.enabled


def test_defaults_for_optional_fields(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "feeds:\n  - id: bbc-latam\n    url: https://feeds.bbci.co.uk/x.xml\n")
    )
    (feed,) = config.feeds
    assert (feed.title, feed.interval, feed.enabled) == ("bbc-latam", timedelta(minutes=15), True)
    assert config.storylines == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("2d", timedelta(days=2)),
        ("1.5h", timedelta(minutes=90)),
        ("600", None),
        ("5 minuts", None),
        ("", None),
        ("m", None),
        ("-5m", None),
    ],
)
def test_durations(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("15", "15 has no unit (write e.g. 15s, 15m or 15h)"),
        ("", "an empty value is not a duration (e.g. 15m, 1h)"),
        ("true", "true is not a duration (e.g. 15m, 1h)"),
        ("99999999999d", "'99999999999d' is longer than 365d"),
        ("0s", "'0s' is shorter than 1s"),
    ],
)
def test_interval_problems(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, f"feeds:\n  - {{id: a, url: 'https://a.example/', interval: {value}}}\n")
    assert problems(path) == [f"{path}: feeds[0].interval: {message}"]


def test_an_empty_url_is_a_missing_url_not_a_dropped_feed(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  - id: a\n    url:\n  - {id: b, url: 'https://b.example/'}\n")
    assert problems(path) == [f"{path}: feeds[0].url: is required"]


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n  - {id: a, url: 'https://a.example/'}\n"
        "feeds:\n  - {id: b, url: 'https://b.example/'}\n",
    )
    (problem,) = problems(path)
    assert (
        problem
        == f"{path}: line 3, column 1: not valid YAML: key 'feeds' appears twice in one mapping"
    )


def test_match_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "storylines:\n  - {id: e, match: Essequibo}\n")
    assert problems(path) == [
        f"{path}: storylines[0].match: must be a mapping with any/all/none term lists"
    ]


def test_a_bad_interval_is_named_by_file_entry_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
feeds:
  - {id: a, url: "https://a.example/rss"}
  - {id: b, url: "https://b.example/rss"}
  - {id: c, url: "https://c.example/rss", interval: 5 minuts}
""",
    )
    assert problems(path) == [
        f"{path}: feeds[2].interval: '5 minuts' is not a duration (e.g. 15m, 1h)"
    ]


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
feeds:
  - id: Bad Id
    url: ftp://example.com/feed
    enabled: sometimes
  - id: ok
    url: https://ok.example/rss
    intervall: 5m
  - id: ok
    url: https://ok2.example/rss
  - just a string
storylines:
  - id: essequibo
    match: {any: []}
  - id: maduro
    title: ""
    match: {all: ["Maduro", 7]}
  - id: no-rules
""",
    )
    found = problems(path)
    assert found == [
        f"{path}: feeds[0].id: 'Bad Id' is not a valid id (lower-case letters, digits and dashes)",
        f"{path}: feeds[0].url: 'ftp://example.com/feed' is not an http(s) URL",
        f"{path}: feeds[0].enabled: 'sometimes' is not true or false",
        f"{path}: feeds[1].intervall: unknown field (expected one of: enabled, id, interval, "
        "title, url)",
        f"{path}: feeds[2].id: 'ok' is used by an earlier entry",
        f"{path}: feeds[3]: must be a mapping",
        f"{path}: storylines[0].match: needs at least one 'any' or 'all' term",
        f"{path}: storylines[1].title: '' is not a non-empty string",
        f"{path}: storylines[1].match.all[1]: 7 is not a word or phrase",
        f"{path}: storylines[2].match: is required: a mapping with any/all/none term lists",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("feeds: [\n  {id: a\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping with 'feeds' and 'storylines'"),
        ("feeds: {id: a}\n", "feeds: must be a list"),
        ("feed:\n  - id: a\n", "feed: unknown field"),
    ],
)
def test_malformed_documents(tmp_path: Path, text: str, expected: str) -> None:
    (problem,) = problems(write(tmp_path, text))
    assert problem.startswith(f"{tmp_path / 'feeds.yaml'}: ")
    assert expected in problem


def test_a_missing_file(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path / "nope.yaml")
    assert problem == f"{tmp_path / 'nope.yaml'}: file not found (set --config or TRACKER_CONFIG)"


def test_config_check_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    write(
        tmp_path,
        "feeds:\n  - {id: x, url: 'https://x.example/', interval: soon}\n  - {id: y, url: nope}\n",
    )
    result = run_tracker("config", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "feeds.yaml: feeds[0].interval: 'soon' is not a duration (e.g. 15m, 1h)",
        "feeds.yaml: feeds[1].url: 'nope' is not an http(s) URL",
    ]
    assert "Traceback" not in result.stderr


def test_config_check_reads_tracker_config_and_summarises(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n  - {id: x, url: 'https://x.example/', enabled: false}\n"
        "storylines:\n  - {id: sky-group, title: Sky Group, match: {any: [Sky Group]}}\n",
    )
    result = run_tracker("config", "check", env={"TRACKER_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: OK, 1 feeds (0 enabled), 1 storylines"
    as_json = run_tracker("config", "check", "--json", "--config", str(path))
    assert json.loads(as_json.stdout)["storylines"][0]["match"]["any"] == ["Sky Group"]
    assert "no enabled feeds" in result.stderr


def test_config_check_json_reports_problems_as_json(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  - {id: x, url: nope}\n")
    result = run_tracker("config", "check", "--json", "--config", str(path))
    assert result.returncode == 2
    assert json.loads(result.stdout) == {
        "ok": False,
        "problems": [f"{path}: feeds[0].url: 'nope' is not an http(s) URL"],
    }
