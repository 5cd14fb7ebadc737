"""Native heap trimming: glibc's malloc_trim really gives freed memory back, the thread is one per
process, and the dashboard starts it on its first page run."""

from __future__ import annotations

import gc
import threading
import weakref

import psutil
import pytest
from streamlit.testing.v1 import AppTest

from pipeline.procs import trim
from tests.support.apptest import APP, use_env


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_a_trim_gives_back_what_glibc_kept_after_a_free():
    if trim._libc_trim() is None:
        pytest.skip("not glibc: no malloc_trim")
    # 100 KiB buffers come from glibc's heap (under its mmap threshold); the last one kept pins
    # the heap's top, so the freed ones below it stay resident until a trim
    blocks = [bytearray(100 * 1024) for _ in range(3000)]
    keep = bytearray(100 * 1024)
    del blocks
    before = _rss_mib()
    assert trim.trim_now() is True
    after = _rss_mib()
    assert before - after > 100, f"RSS {before:.0f} -> {after:.0f} MiB"
    assert len(keep) == 100 * 1024


def test_a_round_frees_what_only_a_cycle_keeps_before_it_trims():
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    trimmed = []
    was = gc.isenabled()
    gc.disable()   # only the round may collect
    try:
        del a, b
        assert gone() is not None
        trim.one_round(lambda pad: trimmed.append(pad) or 1)
        assert gone() is None and trimmed == [0]
    finally:
        if was:
            gc.enable()


def test_the_app_collects_once_a_minute_not_after_every_script_run(tmp_path):
    """Streamlit's collection after every run (page view, fragment rerun) walks every object of
    the process each time (py-spy: 7 % of a core at minute 16 of a soak); `procs.trim` does it
    once a minute instead. Off for `run` and for a `streamlit run` by hand (the project's config)."""
    import tomllib

    from pipeline.runall import app_command
    from pipeline.settings import PROJECT_ROOT, Settings

    cmd = app_command(Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)}), secrets=[])
    assert cmd[cmd.index("--runner.postScriptGC") + 1] == "false"
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_one_thread_per_process_and_a_bad_interval_is_refused():
    first = trim.start(3600)
    assert first is not None and first.is_alive() and first.daemon and first.name == "tormenta-malloc-trim"
    assert trim.start(3600) is first
    with pytest.raises(ValueError, match="positive"):
        trim.start(0)


@pytest.mark.usefixtures("release_cached_clients")
def test_the_dashboard_trims_from_its_first_page_run(monkeypatch, demo_dir):
    use_env(monkeypatch, demo_dir)
    calls = []
    real = trim.start
    monkeypatch.setattr(trim, "start", lambda *a, **k: calls.append(a) or real(*a, **k))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.run()
    assert len(calls) == 2   # every page run asks; the thread is the same one
    assert sum(t.name == "tormenta-malloc-trim" and t.is_alive() for t in threading.enumerate()) == 1
