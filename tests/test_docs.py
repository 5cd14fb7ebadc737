"""Docs that cannot go stale: the README documents every setting with its declared default and
description and the two commands; what the README says about defaults in prose matches the
settings; every repository path and module the docs and module docstrings name exists.

What counts as a named path (`named_paths`), in README.md, docs/*.md and the module docstrings
of pipeline/**, pages/*, bench/* and streamlit_app.py:
* a code span (`x` or ``x``) word that starts with a top-level folder (pipeline/, pages/, tests/,
  bench/, docs/, jvm/, samples/, monitoring/, .ci/, .streamlit/) or ends with .py, .md, .toml,
  .xml or .avsc; placeholders and globs (<x>, *, {x}, $X, ...) and URLs are not paths;
* a Markdown link target that is not a URL or an anchor (resolved from the document's folder);
* anywhere in the text, a word that starts with a top-level folder and ends with one of those
  extensions (docs/PERFORMANCE.md in a table cell, bench/bench_job.py in a docstring);
* a code span that is a dotted name under pipeline, pages, bench or tests
  (`pipeline.kafka.security.client_config`): the longest module prefix must exist and the next
  name must be defined at the top of that module.
A path resolves from the repository root or the document's folder; a bare file name
(`avro.py`) or a partial path (`contract/avro.py`) must be the end of some file's path.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import SPECS, Settings

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


# ---- defaults stated in prose ------------------------------------------------------------------
def actual_default(attr: str) -> Any:
    """The value a setting takes when nothing is set."""
    return getattr(Settings.from_env({}), attr)


def stated_value(attr: str, text: str) -> Any:
    """`text` read as setting `attr` reads its environment variable ("one minute" as "1 minute")."""
    words = {"one": "1", "two": "2", "three": "3", "ten": "10"}
    text = re.sub(r"\b(one|two|three|ten)\b", lambda m: words[m[1]], text.strip())
    return getattr(Settings.from_env({f"TORMENTA_{attr.upper()}": text}), attr)


@dataclass(frozen=True)
class Claim:
    """A README statement of a default: `pattern`'s group 1 is the value it states for `setting`,
    turned by `read` into what TORMENTA_<SETTING> would be set to."""
    setting: str
    pattern: str
    read: Callable[[str], str] = str


def _double_memory(half: str) -> str:
    mb = 2 * int(half.rstrip("m"))
    return f"{mb // 1024}g" if mb % 1024 == 0 else f"{mb}m"


README_CLAIMS = [
    Claim("wire_format", r"→ binarizer \((\w+) bytes\)"),
    Claim("wire_format", r"carries (?:contract )?(\w+)[\w\s]*?\(the\s+emulator's\s+default\)"),
    Claim("wire_format", r"(\w+) is the\s+default: it measured faster"),
    Claim("wire_format", r"emulator in the default format \([^)]*\) \|[^|]*\| (\w+) \d"),
    Claim("wire_format", r"(\w+) wins end to end and is the default"),
    Claim("trigger_interval", r"trigger, (\w+ \w+) by\s+default\)"),
    Claim("trigger_interval", r"after the first processing interval \((\w+ \w+)\)"),
    Claim("retention", r"records live (\d+ \w+)"),
    Claim("retention", r"\*\*record\s+lifetime\*\* in the topic \((\w+ \w+)\)"),
    Claim("retention", r"topic: \d+ partitions, retention (\d+ \w+)"),
    Claim("partitions", r"(\d+) partitions,\s+│"),
    Claim("partitions", r"transactions topic: (\d+) partitions"),
    Claim("threshold", r"amount > (\d+) → Delta"),
    Claim("spark_master", r"`(local\[N\])` by default", lambda text: "local" if text == "local[N]" else text),
    Claim("storage_uri", r"\(the (data folder) by default", lambda text: "local" if text == "data folder" else text),
    Claim("kafka_security_protocol", r"# (\w+) \(default\), SSL"),
    Claim("kafka_security_protocol", r"binds to [\d.]+ and talks (plaintext)"),
    Claim("app_address", r"\*\*Defaults\.\*\* Everything binds to ([\d.]+)"),
    Claim("app_address", r"opens the dashboard on\s+<http://([\d.]+):\d+>"),
    Claim("app_port", r"opens the dashboard on\s+<http://[\d.]+:(\d+)>"),
    Claim("broker_heap", r"half of\s+`TORMENTA_BROKER_HEAP` \((\d+m)\)", _double_memory),
    Claim("bootstrap_servers", r"\((\d+)/\d+/\d+\s+and \d+/\d+/\d+\)", lambda port: f"127.0.0.1:{port}"),
    Claim("controller_port", r"\(\d+/\d+/\d+\s+and (\d+)/\d+/\d+\)"),
    Claim("jvm_archive", r"\*\*[\d.]+ s\*\* (with|without) the archive \(the default\)",
          lambda text: "true" if text == "with" else "false"),
]
# README lines that say "default" without stating a setting's value
NOT_A_VALUE = [r"every\s*$", r"^default runs on a laptop", r"^\| variable \| default \| meaning \|$"]


def _line_spans(text: str) -> Iterator[tuple[int, int, str]]:
    start = 0
    for line in text.splitlines(keepends=True):
        yield start, start + len(line), line.rstrip("\n")
        start += len(line)


def default_claim_problems(readme: str, claims: list[Claim] = README_CLAIMS) -> list[str]:
    """README statements of defaults that differ from the settings, claims that no longer match any
    text, and lines that say "default" without being a checked claim (add one, or to NOT_A_VALUE)."""
    problems, covered = [], []
    for claim in claims:
        matches = list(re.finditer(claim.pattern, readme))
        if not matches:
            problems.append(f"no README text matches the claim {claim.pattern!r} ({claim.setting}): "
                            "reworded? update README_CLAIMS")
        for m in matches:
            covered.append((m.start(), m.end()))
            try:
                stated = stated_value(claim.setting, claim.read(m[1]))
            except Exception as exc:  # noqa: BLE001 - a value the setting refuses is a finding too
                problems.append(f"README says {m[0]!r}: {m[1]!r} is no value of {claim.setting} ({exc})")
                continue
            if stated != actual_default(claim.setting):
                problems.append(f"README says {m[0]!r}, but the default {claim.setting} is "
                                f"{actual_default(claim.setting)!r}")
    for start, end, line in _line_spans(readme):
        if (re.search(r"default", line, re.I) and not _ROW.match(line)
                and not any(s < end and start < e for s, e in covered)
                and not any(re.search(p, line) for p in NOT_A_VALUE)):
            problems.append(f"README line states a default no check reads: {line.strip()!r}")
    return problems


def test_readme_prose_defaults_match_the_settings():
    assert default_claim_problems(README) == []


def test_the_default_check_fails_on_a_stale_readme():
    stale = {
        "→ binarizer (Avro bytes)": "→ binarizer (JSON bytes)",
        "one minute by default)": "30 seconds by default)",
        "amount > 1500 → Delta": "amount > 1000 → Delta",
        "(the emulator's default)": "(the emulator's choice)",   # the claim no longer matches anything
    }
    for good, bad in stale.items():
        assert good in README, good
        assert len(default_claim_problems(README.replace(good, bad))) >= 1, bad
    unchecked = README + "\nThe job keeps 7 days of history by default.\n"
    assert default_claim_problems(unchecked) == [
        "README line states a default no check reads: 'The job keeps 7 days of history by default.'"]


_ENV_DEFAULT = re.compile(r"`(TORMENTA_[A-Z_]+)`[^`\n]{0,20}?\bdefault:? `?([\w.:/\[\]-]+?)`?(?=[\s,;)]|$)")


def env_default_problems(text: str) -> list[str]:
    """'`TORMENTA_X` (default v)' and the like in a document, where v is not X's default."""
    problems = []
    for m in _ENV_DEFAULT.finditer(text):
        attr = m[1].removeprefix("TORMENTA_").lower()
        if attr not in Settings.model_fields:
            problems.append(f"{m[0]!r}: {m[1]} is not a setting")
        elif stated_value(attr, m[2]) != actual_default(attr):
            problems.append(f"{m[0]!r}: the default is {actual_default(attr)!r}")
    return problems


def test_docs_name_each_settings_default_right():
    found = {doc.name: env_default_problems(doc.read_text()) for doc in [ROOT / "README.md", *DOCS]}
    assert {name: p for name, p in found.items() if p} == {}
    assert env_default_problems("the `TORMENTA_THRESHOLD` (default 1000)") == [
        "'`TORMENTA_THRESHOLD` (default 1000': the default is Decimal('1500')"]
    assert env_default_problems("(`TORMENTA_DRIVER_HOST`, default `127.0.0.1`)") == []


# ---- every named path exists -----------------------------------------------------------------------
DOCS = sorted((ROOT / "docs").glob("*.md"))
TOP = ("pipeline/", "pages/", "tests/", "bench/", "docs/", "jvm/", "samples/", "monitoring/", ".ci/", ".streamlit/")
EXTENSIONS = (".py", ".md", ".toml", ".xml", ".avsc")
MODULE_ROOTS = ("pipeline", "pages", "bench", "tests")
_SKIP_DIRS = {".git", ".venv", ".cache", "data", "__pycache__", ".ruff_cache", ".pytest_cache", "test-artifacts",
              "reports", "node_modules"}
_CODE = re.compile(r"``([^`]+)``|`([^`\n]+)`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_PLAIN = re.compile(r"(?<![\w/.-])((?:" + "|".join(re.escape(t) for t in TOP) + r")[\w./-]*?(?:"
                    + "|".join(re.escape(e) for e in EXTENSIONS) + r"))(?![\w/])")
_DOTTED = re.compile(r"(?:" + "|".join(MODULE_ROOTS) + r")(?:\.\w+)+")


def repo_files(root: Path = ROOT) -> set[str]:
    """Every file under the root (relative, with '/'), without the virtualenv, caches and data."""
    out: set[str] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        for p in folder.iterdir():
            if p.is_dir():
                if p.name not in _SKIP_DIRS:
                    stack.append(p)
            else:
                out.add(p.relative_to(root).as_posix())
    return out


def _clean(word: str) -> str:
    word = word.strip().strip("\"'").rstrip(".,;:)!?").lstrip("(").removeprefix("./")
    return word.split("::")[0].split("#")[0]


def _is_placeholder(word: str) -> bool:
    """Globs, <names>, $VARIABLES, URLs, absolute and home paths: not a file of this repository."""
    return (any(c in word for c in "<>*{}$…[]|") or "://" in word or "..." in word
            or word.startswith(("/", "~")))


def _user_files(root: Path) -> set[str]:
    """Files .gitignore names one by one (e.g. .streamlit/secrets.toml): the user's, never in the repository."""
    ignore = root / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    return {line.strip().lstrip("/") for line in lines if line.strip() and not any(c in line for c in "*#!")}


def named_paths(text: str) -> list[tuple[str, str]]:
    """(kind, name) for every path and dotted module `text` names (see the module docstring)."""
    found: list[tuple[str, str]] = []
    for m in _CODE.finditer(text):
        span = m[1] or m[2]
        for raw in span.split():
            word = _clean(raw)
            if not word or _is_placeholder(word):
                continue
            dotted = re.sub(r"\(.*", "", word)
            if _DOTTED.fullmatch(dotted) and "/" not in dotted:
                found.append(("module", dotted))
            elif word.startswith(TOP) or word.endswith(EXTENSIONS):
                found.append(("path", word))
    for m in _LINK.finditer(text):
        target = m[1].split("#")[0]
        if target and not _is_placeholder(target) and not target.startswith("mailto:"):
            found.append(("link", target))
    prose = _LINK.sub(" ", _CODE.sub(" ", text))  # what is left outside code spans and link targets
    found += [("path", m[1]) for m in _PLAIN.finditer(prose)]
    return found


def _module_file(dotted: str, root: Path) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_exists(dotted: str, root: Path = ROOT) -> bool:
    """`dotted` is a module, a package, or a module's top-level name (then anything below it)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        path = _module_file(".".join(parts[:i]), root)
        if path is not None:
            rest = parts[i:]
            return not rest or rest[0] in _top_level_names(path) or _module_file(".".join(parts[:i + 1]), root)
    return False


def path_exists(name: str, where: Path, files: set[str], root: Path = ROOT) -> bool:
    """`name` from the root or from `where` (the document's folder), or the end of some file's path."""
    if (root / name).exists() or (where / name).exists():
        return True
    tail = "/" + name.strip("/")
    return any(("/" + f).endswith(tail) or ("/" + f).startswith(tail + "/") for f in files)


def stale_names(text: str, where: Path, files: set[str], root: Path = ROOT) -> list[str]:
    """The named paths and modules of `text` (a document in folder `where`) that do not exist."""
    stale, user_files = [], _user_files(root)
    for kind, name in named_paths(text):
        if name.rstrip("/") in user_files:
            continue
        ok = module_exists(name, root) if kind == "module" else (
            (where / name).exists() if kind == "link" else path_exists(name, where, files, root))
        if not ok:
            stale.append(f"{kind} {name}")
    return sorted(set(stale))


def documents() -> Iterator[tuple[str, str, Path]]:
    """(name, text, folder) of README.md, docs/*.md and every module docstring in scope."""
    for doc in [ROOT / "README.md", *DOCS]:
        yield doc.relative_to(ROOT).as_posix(), doc.read_text(), doc.parent
    sources = [*sorted((ROOT / "pipeline").rglob("*.py")), *sorted((ROOT / "pages").glob("*.py")),
               *sorted((ROOT / "bench").glob("*.py")), ROOT / "streamlit_app.py"]
    for src in sources:
        doc = ast.get_docstring(ast.parse(src.read_text()), clean=False)
        if doc:
            yield src.relative_to(ROOT).as_posix(), doc, src.parent


def test_every_named_path_and_module_exists():
    files = repo_files()
    stale = {name: found for name, text, where in documents() if (found := stale_names(text, where, files))}
    assert stale == {}, "names that no longer exist (renamed or moved?):\n" + "\n".join(
        f"{name}: {', '.join(found)}" for name, found in stale.items())


def test_documents_cover_the_readme_the_docs_and_the_docstrings():
    names = [name for name, _, _ in documents()]
    assert {"README.md", "docs/ARCHITECTURE.md", "pipeline/settings.py", "pages/overview.py",
            "streamlit_app.py"} <= set(names)
    assert any(n.startswith("bench/") for n in names) and any(n.startswith("pipeline/job/") for n in names)


@pytest.fixture
def planted(tmp_path) -> Path:
    """A tiny repository: pipeline/contract/avro.py (with `encode`), docs/A.md, bench/b.py."""
    (tmp_path / "pipeline" / "contract").mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "contract" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "contract" / "avro.py").write_text("import json\nSCHEMA_ID = 1\n\ndef encode():\n    pass\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# A\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "b.py").write_text("")
    return tmp_path


def test_the_path_check_passes_what_exists(planted):
    files = repo_files(planted)
    good = ("`pipeline/contract/avro.py` and ``pipeline/contract/`` and `avro.py` and `contract/avro.py`; "
            "`pipeline.contract.avro`, `pipeline.contract.avro.encode(x)`, `pipeline.contract.avro.SCHEMA_ID`, "
            "`pipeline.contract`; see [A](docs/A.md#top) and bench/b.py; `python bench/b.py --fast`; "
            "placeholders `pipeline/<name>.py`, `tests/**/test_*.py`, `$DATA/x.md`, `~/.streamlit/x.toml`; a URL "
            "[x](https://example.com/y.md); `data/run/x.json` is runtime data, not a repository path")
    assert stale_names(good, planted, files, planted) == []
    assert stale_names("[up](../docs/A.md) and [same](A.md)", planted / "docs", files, planted) == []


def test_the_path_check_flags_what_is_stale(planted):
    files = repo_files(planted)
    bad = {
        "`pipeline/capacity.py`": "path pipeline/capacity.py",
        "the `readers` in ``pipeline/readers/``": "path pipeline/readers/",
        "`pipeline.readers`": "module pipeline.readers",
        "`pipeline.contract.avro.amount_of`": "module pipeline.contract.avro.amount_of",
        "[LOADTEST](docs/LOADTEST.md)": "link docs/LOADTEST.md",
        "figures in docs/PERF.md.": "path docs/PERF.md",
        "`procs.py` stops it": "path procs.py",
        "run `bench/bench_gone.py --part x`": "path bench/bench_gone.py",
    }
    for text, expected in bad.items():
        assert stale_names(text, planted, files, planted) == [expected], text
