"""The options of ``python -m pipeline loadtest --profile soak`` (the flags the other profiles do not take).

    --rate 10000 --duration 1h [--trigger 1m] [--chaos [--chaos-every 5m-10m] [--seed N]]
    [--nodes 1|3] [--outage 10m [--outage-rate 50000] [--outage-at 20m]]
    [--sample-every 30s] [--browser-every 30s | --no-browser] [--keep-data]

`add_soak_arguments(parser)` declares them on the ``loadtest`` parser (default None, so
a soak flag given to another profile is refused in one line); `SoakOptions.from_args`
reads and checks them (SettingsError, one line, exit 2).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pipeline.errors import SettingsError
from pipeline.settings import parse_duration

SOAK = "soak"
SOAK_FLAGS = {"rate": "--rate", "duration": "--duration", "chaos": "--chaos", "chaos_every": "--chaos-every",
              "seed": "--seed", "nodes": "--nodes", "outage": "--outage", "outage_rate": "--outage-rate",
              "outage_at": "--outage-at", "sample_every": "--sample-every", "browser_every": "--browser-every",
              "no_browser": "--no-browser", "keep_data": "--keep-data"}


def add_soak_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("soak (with --profile soak)")
    g.add_argument("--rate", type=float, help="steady emulator rate, tx/s (default 10000)")
    g.add_argument("--duration", help="how long to run (default 1h)")
    g.add_argument("--chaos", action="store_const", const=True, help="kill -9 one part at a time on a seeded schedule")
    g.add_argument("--chaos-every", metavar="LOW-HIGH", help="gap between kills (default 5m-10m)")
    g.add_argument("--seed", type=int, help="seed of the chaos schedule (default 1)")
    g.add_argument("--nodes", type=int, help="broker nodes: 1 or 3 (default 1; 3 lets chaos kill a node)")
    g.add_argument("--outage", help="stop the job this long (e.g. 10m), then let the supervisor bring it back")
    g.add_argument("--outage-rate", type=float, help="emulator rate during the outage, tx/s (default 50000)")
    g.add_argument("--outage-at", help="when the outage starts (default: after a third of the run)")
    g.add_argument("--sample-every", help="sampling interval (default 30s)")
    g.add_argument("--browser-every", help="interval of the browser's rounds over the pages (default 30s)")
    g.add_argument("--no-browser", action="store_const", const=True, help="no headless browser")
    g.add_argument("--keep-data", action="store_const", const=True,
                   help="keep the run's broker logs and checkpoints (default: deleted once a finished soak "
                        "has reported; a failed or stopped one keeps them; Delta, logs and report are always kept)")


def _dur(text: str | None, name: str, default: float) -> float:
    return default if text is None else parse_duration(text, name=name)


def _range(text: str | None) -> tuple[float, float]:
    if text is None:
        return 300.0, 600.0
    low, sep, high = text.partition("-")
    if not sep:
        raise SettingsError(f"--chaos-every={text!r} is not a range; allowed: LOW-HIGH, e.g. 5m-10m or 60-90s")
    hi = parse_duration(high, name="--chaos-every")
    unit = high.lstrip("0123456789.")  # "60-90s": the unit of the high end applies to a bare low end
    lo = parse_duration(low + (unit if low.replace(".", "").isdigit() else ""), name="--chaos-every")
    if not 0 < lo <= hi:
        raise SettingsError(f"--chaos-every={text!r}: the low end must be > 0 and ≤ the high end")
    return lo, hi


@dataclass(frozen=True)
class SoakOptions:
    rate: float = 10_000.0
    duration_s: float = 3600.0
    trigger_s: float = 60.0
    chaos: bool = False
    chaos_every: tuple[float, float] = (300.0, 600.0)
    seed: int = 1
    nodes: int = 1
    outage_s: float | None = None
    outage_rate: float = 50_000.0
    outage_at_s: float | None = None
    sample_every_s: float = 30.0
    browser_every_s: float | None = 30.0
    catch_up_timeout_s: float = 600.0
    keep_data: bool = False

    @property
    def outage_start_s(self) -> float:
        return self.outage_at_s if self.outage_at_s is not None else self.duration_s / 3

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SoakOptions:
        o = cls(rate=args.rate if args.rate is not None else 10_000.0,
                duration_s=_dur(args.duration, "--duration", 3600.0),
                trigger_s=args.trigger_s if args.trigger_s is not None else 60.0,
                chaos=bool(args.chaos), chaos_every=_range(args.chaos_every),
                seed=args.seed if args.seed is not None else 1, nodes=args.nodes if args.nodes is not None else 1,
                outage_s=_dur(args.outage, "--outage", 0.0) or None,
                outage_rate=args.outage_rate if args.outage_rate is not None else 50_000.0,
                outage_at_s=_dur(args.outage_at, "--outage-at", 0.0) if args.outage_at is not None else None,
                sample_every_s=_dur(args.sample_every, "--sample-every", 30.0),
                browser_every_s=None if args.no_browser else _dur(args.browser_every, "--browser-every", 30.0),
                catch_up_timeout_s=float(args.catch_up_timeout_s), keep_data=bool(args.keep_data))
        o.check()
        return o

    def check(self) -> None:
        if not 0 < self.rate <= 2_000_000 or not 0 < self.outage_rate <= 2_000_000:
            raise SettingsError("--rate and --outage-rate must be > 0 and ≤ 2,000,000 tx/s")
        if self.nodes not in (1, 3):
            raise SettingsError(f"--nodes={self.nodes} is not allowed; allowed: 1 or 3")
        if self.duration_s < 60:
            raise SettingsError(f"--duration={self.duration_s:g}s is too short; allowed: 60 s or more")
        if self.sample_every_s < 1:
            raise SettingsError("--sample-every must be at least 1 s")
        if self.outage_s is not None and self.outage_start_s + self.outage_s >= self.duration_s:
            raise SettingsError(f"the outage ({self.outage_start_s:g} s + {self.outage_s:g} s) must end before "
                                f"--duration ({self.duration_s:g} s)")


def refuse_soak_flags(args: argparse.Namespace) -> None:
    """A soak flag given to another profile: one line (SettingsError)."""
    given = [flag for dest, flag in SOAK_FLAGS.items() if getattr(args, dest, None) is not None]
    if given:
        raise SettingsError(f"{', '.join(given)} only go with --profile soak (the profile is {args.profile})")
