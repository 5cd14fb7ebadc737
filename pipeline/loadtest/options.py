"""The options of one load test, declared once: every field is one ``loadtest`` CLI flag.

`add_arguments(parser)` declares the flags from the fields, `LoadTestOptions.from_args(args)`
reads them back and `LoadTestOptions.to_argv()` writes them for the page's background
launch (``python -m pipeline loadtest ...``). Options -> argv -> parser -> options is the
identity for every field, so the launch cannot drop an option the CLI knows
(``tests/loadtest/test_options_result.py`` checks each field).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any

from pipeline.errors import SettingsError
from pipeline.loadtest import plan as plans
from pipeline.loadtest.soak_options import SOAK
from pipeline.settings import parse_duration


@dataclass(frozen=True)
class Flag:
    """How one option is spelled on the command line."""

    name: str
    help: str
    kind: str = "float"         # float | str | duration | bool (store_true) | negated (--no-x, default on)
    choices: tuple[str, ...] | None = None
    hidden: bool = False


def _opt(default: Any, flag: Flag) -> Any:
    return field(default=default, metadata={"flag": flag})


def _duration(text: str) -> float:
    try:
        return parse_duration(text, name="--trigger")
    except SettingsError as exc:  # argparse reports it as a bad value of the flag
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class LoadTestOptions:
    profile: str = _opt("christmas", Flag("--profile", "the plan (soak: the whole product for --duration, see "
                                                      "the soak flags)", "str", choices=(*plans.PLANS, SOAK)))
    scale: float = _opt(1.0, Flag("--scale", "multiply every step duration (e.g. 0.25 for a quick run)"))
    trigger_s: float | None = _opt(None, Flag("--trigger", "trigger interval of the job during the test "
                                                           "(default: the plan's)", "duration"))
    ceiling: float | None = _opt(None, Flag("--ceiling", "highest rate of the beyond-peak steps, tx/s"))
    normal: float | None = _opt(None, Flag("--normal", "warm-up rate, tx/s (default: the plan's)"))
    peak: float | None = _opt(None, Flag("--peak", "peak rate held, tx/s (default: the plan's)"))
    beyond: bool = _opt(True, Flag("--no-beyond", "stop after the hold at the peak", "negated"))
    keep_topic: bool = _opt(False, Flag("--keep-topic", "keep the run's topics (default: deleted after)", "bool"))
    catch_up_timeout_s: float = _opt(300.0, Flag("--catch-up-timeout", "seconds to wait for the job to process "
                                                                       "everything after the last step"))
    run_id: str | None = _opt(None, Flag("--run-id", "", "str", hidden=True))
    prime: bool = _opt(True, Flag("--no-prime", "do not warm the job on a little data before the plan "
                                                "(measures JVM warm-up too)", "negated"))
    prime_seconds: float = _opt(2.0, Flag("--prime-seconds", "seconds of warm-up-rate data that prime the job"))
    prime_timeout_s: float = _opt(300.0, Flag("--prime-timeout", "seconds to wait for the primed batch"))
    kill_broker_at: float | None = _opt(None, Flag("--kill-broker-at", "kill one Kafka node (a partition leader) "
                                                      "at the start of step N (1 = first) and restart it at the end "
                                                      "of that step; needs TORMENTA_BROKER_NODES >= 2"))

    def check_kill_step(self, steps: int, nodes: int) -> int | None:
        """The 0-based step at whose start a node is killed, or None; SettingsError (one line) if not allowed."""
        at = self.kill_broker_at
        if at is None:
            return None
        if nodes < 2:
            raise SettingsError(f"--kill-broker-at needs a cluster, but TORMENTA_BROKER_NODES={nodes}; "
                                "allowed: with TORMENTA_BROKER_NODES=3..9")
        if at != int(at) or not 1 <= at <= steps:
            raise SettingsError(f"--kill-broker-at={at:g} is not a step of the plan; allowed: 1..{steps}")
        return int(at) - 1

    def build_plan(self) -> plans.Plan:
        return plans.build_plan(self.profile, scale=self.scale, trigger_s=self.trigger_s, ceiling=self.ceiling,
                                normal=self.normal, peak=self.peak, beyond=self.beyond)

    def to_argv(self) -> list[str]:
        """The ``loadtest`` flags that give these options back through the CLI parser."""
        argv: list[str] = []
        for f in fields(self):
            flag, value = f.metadata["flag"], getattr(self, f.name)
            if flag.kind == "bool":
                argv += [flag.name] if value else []
            elif flag.kind == "negated":
                argv += [] if value else [flag.name]
            elif value is not None:
                argv += [flag.name, value if flag.kind == "str" else repr(float(value))]
        return argv

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoadTestOptions:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare one flag per option (dest = the field name)."""
    for f in fields(LoadTestOptions):
        flag: Flag = f.metadata["flag"]
        text = argparse.SUPPRESS if flag.hidden else flag.help
        if flag.kind in ("bool", "negated"):
            action = "store_true" if flag.kind == "bool" else "store_false"
            parser.add_argument(flag.name, dest=f.name, action=action, help=text)
            continue
        kind = {"float": float, "str": str, "duration": _duration}[flag.kind]
        if f.default is not None and not flag.hidden:
            text += f" (default {f.default})"
        parser.add_argument(flag.name, dest=f.name, type=kind, default=f.default, choices=flag.choices, help=text)
