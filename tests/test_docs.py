"""The README documents every setting with its declared default and description, and the two commands."""

import re
from pathlib import Path

from pipeline.settings import SPECS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
_ROW = re.compile(r"^\| `(TORMENTA_[A-Z_]+)` \| `([^`]*)` \| (.*) \|$")


def table_differences(readme: str) -> list[str]:
    """Where the README's settings table differs from the declarations in pipeline/settings.py."""
    documented = {m[1]: (m[2], m[3]) for m in map(_ROW.match, readme.splitlines()) if m}
    declared = {spec.env: (spec.default, spec.help) for spec in SPECS}
    problems = [f"{env} is not in the README table" for env in declared.keys() - documented.keys()]
    problems += [f"{env} is in the README table but not declared" for env in documented.keys() - declared.keys()]
    problems += [f"{env}: README says {documented[env]}, declared {declared[env]}"
                 for env in declared.keys() & documented.keys() if documented[env] != declared[env]]
    return problems


def test_readme_table_matches_the_declarations():
    assert table_differences(README) == []


def test_the_check_sees_every_kind_of_drift():
    row = "| `TORMENTA_PARTITIONS` | `3` | Partitions of the transactions topic |"
    assert row in README
    drift = {
        "default": row.replace("`3`", "`4`"),
        "meaning": row.replace("Partitions", "Shards"),
        "missing": "",
        "unknown": row + "\n| `TORMENTA_SHARDS` | `3` | Shards |",
    }
    for kind, new in drift.items():
        assert len(table_differences(README.replace(row, new))) == 1, kind


def test_two_commands():
    assert "make run" in README and "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
