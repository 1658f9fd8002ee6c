"""tests/robustness/README.md lists exactly the kinds the battery tests, with their outcomes."""

from __future__ import annotations

from pathlib import Path

from battery import battery_table, markdown_rows

README = Path(__file__).with_name("README.md")


def test_readme_table_is_the_battery() -> None:
    text = README.read_text()
    table = text.split("<!-- battery table")[1].split("<!-- end of battery table -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| group")]
    assert rows == markdown_rows(), "regenerate the table: python tests/robustness/battery.py"


def test_at_least_25_kinds_each_named_once() -> None:
    kinds = [kind for _, kind, _, _ in battery_table()]
    assert len(kinds) >= 25 and len(set(kinds)) == len(kinds)


def test_the_project_readme_counts_the_kinds() -> None:
    n = len(battery_table())
    assert f"lists the {n} kinds of bad" in (README.parents[2] / "README.md").read_text()
    assert f"## The kinds ({n})" in README.read_text()
