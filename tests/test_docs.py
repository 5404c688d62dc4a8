"""The README's promises: its two set-up commands, and CI running the test one verbatim."""

from __future__ import annotations

import re

from helpers import REPO_ROOT


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_readme_opens_with_the_two_set_up_commands() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    run, test = readme_commands()[:2]
    assert text.index(run) < text.index("## ")
    assert "pip install ." in run and "tracker" in run.split("pip install .")[1]
    assert "pytest" in test


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    test_command = readme_commands()[1]
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_readme_documents_both_settings() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    for name in ("--database-url", "TRACKER_DATABASE_URL", "--config", "TRACKER_CONFIG"):
        assert name in text
