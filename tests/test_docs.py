"""The README documents every setting with its real default, and the two commands."""

from pathlib import Path

from pipeline.settings import SPECS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented_with_its_default():
    for spec in SPECS:
        if spec.attr in ("jars_dir", "sample_file"):
            assert f"`{spec.env}`" in README
            continue
        assert f"| `{spec.env}` | `{spec.default}` |" in README, spec.env


def test_two_commands():
    assert "make run" in README and "make test" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
