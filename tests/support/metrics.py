"""Scraping a metrics endpoint in tests: the text, promtool's verdict, and the samples by name and labels."""

from __future__ import annotations

import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

PROMTOOL = "/usr/bin/promtool"


def scrape(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.status == 200, resp.status
        return resp.read().decode()


def promtool_check(text: str) -> None:
    """`promtool check metrics` on the scraped text: exit 0 and no lint finding."""
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, frozenset of label items): value} of every sample in the text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    """The one sample `name` with exactly these labels (KeyError names what was there)."""
    key = (name, frozenset(labels.items()))
    if key not in found:
        near = sorted(str(dict(k[1])) for k in found if k[0] == name)
        raise KeyError(f"no sample {name}{labels}; present: {near or 'none'}")
    return found[key]


def names(found: dict) -> set[str]:
    return {n for n, _ in found}
