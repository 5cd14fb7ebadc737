"""The tests' one way to wait (tests/support/waiting.py): the value, the timeout, a watched process."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support.waiting import wait_for


def test_returns_the_first_true_value():
    answers = iter([None, 0, "", {"rate": 5}])
    assert wait_for(lambda: next(answers), 5, "an answer", every=0.001) == {"rate": 5}


def test_times_out_naming_what_it_waited_for():
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^timed out after 0\.2 s waiting for the first batch$"):
        wait_for(lambda: False, 0.2, "the first batch", every=0.01)
    assert 0.2 <= time.monotonic() - started < 5


def test_a_watched_process_that_exits_fails_at_once_with_its_log_tail(tmp_path):
    log = tmp_path / "job.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "print('x' * 3000 + ' the broker is gone'); raise SystemExit(3)"],
                                stdout=out, stderr=subprocess.STDOUT)
    proc.wait(30)
    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        wait_for(lambda: False, 60, "a first batch", process=proc, log=log)
    assert time.monotonic() - started < 5  # not the 60 s timeout
    message = str(failure.value)
    first, tail = message.split("\n", 1)
    assert first == "the process exited (3) while waiting for a first batch:"
    assert tail.endswith(" the broker is gone\n") and len(tail) == 2000


def test_a_timeout_quotes_the_log_when_given(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("starting\nstill compiling the query\n")
    with pytest.raises(AssertionError, match=r"^timed out after 0\.1 s waiting for a batch:\nstarting\nstill compiling"):
        wait_for(lambda: False, 0.1, "a batch", log=log, every=0.01)


def test_a_watched_process_still_running_does_not_stop_the_wait(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ticks = iter(range(5))
        assert wait_for(lambda: next(ticks) == 3, 10, "three ticks", process=proc, every=0.01)
    finally:
        proc.kill()
        proc.wait(10)


def test_without_a_log_the_failure_says_so():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    proc.wait(30)
    with pytest.raises(AssertionError, match=r"exited \(1\) while waiting for the app:\n\(no log given\)$"):
        wait_for(lambda: False, 10, "the app", process=proc)
