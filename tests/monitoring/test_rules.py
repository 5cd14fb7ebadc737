"""The alert rules in monitoring/alerts.yaml: promtool accepts them, every rule has a runbook section,
and `promtool test rules` shows each one firing and staying silent (monitoring/tests/*.yaml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "alerts.yaml"
CASES = sorted((ROOT / "monitoring" / "tests").glob("*.yaml"))
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make monitoring)")


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_promtool_checks_the_rules():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


@needs_promtool
def test_every_promtool_case_passes():
    assert CASES, "no rule tests in monitoring/tests"
    done = promtool("test", "rules", *map(str, CASES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(CASES), done.stdout


@needs_promtool
def test_a_changed_threshold_fails_the_cases(tmp_path):
    """The cases pin the rules: the same cases against a rule file with a looser threshold fail."""
    (tmp_path / "tests").mkdir()
    changed = RULES.read_text().replace("0.95 * tormenta_emulator_target", "0.75 * tormenta_emulator_target")
    assert changed != RULES.read_text()
    (tmp_path / "alerts.yaml").write_text(changed)
    case = tmp_path / "tests" / "emulator.yaml"
    shutil.copy(ROOT / "monitoring" / "tests" / "emulator.yaml", case)
    done = promtool("test", "rules", str(case), cwd=tmp_path)
    assert done.returncode != 0
    assert "TormentaEmulatorBelowTarget" in done.stdout + done.stderr


def _cases_by_alert() -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for path in CASES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                kind = "firing" if check.get("exp_alerts") else "silent"
                counts = found.setdefault(check["alertname"], {"firing": 0, "silent": 0})
                counts[kind] += 1
    return found


def test_every_rule_has_a_firing_and_a_silent_case():
    cases = _cases_by_alert()
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)), "two rules share a name"
    missing = [(n, kind) for n in names for kind in ("firing", "silent") if cases.get(n, {}).get(kind, 0) == 0]
    assert not missing, f"rules without a {', '.join(sorted({k for _, k in missing}))} case: {missing}"
    unknown = sorted(set(cases) - set(names))
    assert not unknown, f"cases for alerts that do not exist: {unknown}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the markdown headings (lower case, spaces to dashes, punctuation dropped)."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_every_rule_has_severity_annotations_and_a_runbook_section():
    anchors = _anchors(RUNBOOK.read_text())
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        page, _, anchor = notes["runbook_url"].partition("#")
        assert page == "docs/RUNBOOK.md", name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no section #{anchor} in docs/RUNBOOK.md"
