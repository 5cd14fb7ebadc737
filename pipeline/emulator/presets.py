"""Rate presets and load profiles of the storm emulator.

A profile turns the *base rate* of the desired state (transactions per second) into the
target rate at a moment ``t`` seconds after the profile was applied. Profiles are plain
data -- ``{"name": "spike", "factor": 5, "every": 60, "length": 5}`` -- so they travel
through the control topic as JSON; `make_profile()` validates such a dict and returns a
`Profile` whose ``rate(base, t)`` the pacer integrates.

    steady                                    base rate, constant
    step    to=2*base  at=60                  base until `at` seconds, then `to`
    ramp    from=0     seconds=60             linear from `from` to base over `seconds`, then base
    spike   factor=5   every=60  length=5     base, and factor x base during the last
                                              `length` seconds of every `every`-second period
    daily   period=86400  start_hour=0        base x the daily curve (quiet nights, lunch bump,
                                              evening peak); base is the peak rate; one
                                              simulated day lasts `period` seconds

Presets name a base rate: "Normal day" = 10,000 tx/s, "Christmas" = 50,000 tx/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import SettingsError

PRESETS: dict[str, int] = {"Normal day": 10_000, "Christmas": 50_000}
MAX_RATE = 2_000_000.0

# Relative activity per hour of day (same shape as the sample generator's event times).
DAILY_CURVE = (2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 11, 13, 12, 10, 10, 11, 13, 15, 16, 14, 10, 6, 4)
_DAILY_PEAK = max(DAILY_CURVE)

# name -> {parameter: (default, lower bound, upper bound, help)}; a default of None
# means "derived from the base rate" (see `Profile.rate`).
PROFILES: dict[str, dict[str, tuple[Any, float, float, str]]] = {
    "steady": {},
    "step": {
        "to": (None, 0.0, MAX_RATE, "rate after the step, tx/s (default: twice the base rate)"),
        "at": (60.0, 0.0, 365 * 86400.0, "seconds after the profile starts"),
    },
    "ramp": {
        "from": (0.0, 0.0, MAX_RATE, "starting rate, tx/s"),
        "seconds": (60.0, 0.001, 365 * 86400.0, "duration of the ramp up (or down) to the base rate"),
    },
    "spike": {
        "factor": (5.0, 0.0, 1000.0, "rate multiplier during a spike"),
        "every": (60.0, 0.01, 365 * 86400.0, "period between spike starts, seconds"),
        "length": (5.0, 0.0, 365 * 86400.0, "spike duration, seconds (< every)"),
    },
    "daily": {
        "period": (86400.0, 1.0, 365 * 86400.0, "seconds per simulated day"),
        "start_hour": (0.0, 0.0, 24.0, "hour of the simulated day at the profile start"),
    },
}


def check_number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """A finite number within [lo, hi] (or (lo, hi] with lo_open); SettingsError saying what is allowed."""
    bound = f"> {lo:g} and <= {hi:g}" if lo_open else f"{lo:g}..{hi:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SettingsError(f"{name}={value!r} is not a number; allowed: {bound}")
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number; allowed: {bound}") from None
    low_ok = number > lo if lo_open else number >= lo
    if not math.isfinite(number) or not low_ok or number > hi:
        raise SettingsError(f"{name}={value!r} is out of range; allowed: {bound}")
    return number


@dataclass(frozen=True)
class Profile:
    name: str
    params: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    def rate(self, base: float, t: float) -> float:
        """Target rate (tx/s) `t` seconds after the profile started, for base rate `base`."""
        p = self.params
        if self.name == "steady":
            return base
        if self.name == "step":
            to = p.get("to")
            return base if t < p["at"] else (2 * base if to is None else to)
        if self.name == "ramp":
            start = p["from"]
            if t >= p["seconds"]:
                return base
            return start + (base - start) * max(t, 0.0) / p["seconds"]
        if self.name == "spike":
            phase = t % p["every"]
            return base * p["factor"] if phase >= p["every"] - p["length"] else base
        if self.name == "daily":
            hour = (p["start_hour"] + 24.0 * t / p["period"]) % 24.0
            i = int(hour)
            frac = hour - i
            level = DAILY_CURVE[i] * (1 - frac) + DAILY_CURVE[(i + 1) % 24] * frac
            return base * level / _DAILY_PEAK
        raise AssertionError(self.name)  # make_profile() only builds known names


def make_profile(spec: str | dict[str, Any] | Profile | None) -> Profile:
    """Validate a profile given as a name or a dict; unknown names/parameters raise SettingsError."""
    if isinstance(spec, Profile):
        return spec
    if spec is None:
        spec = {"name": "steady"}
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise SettingsError(f"profile {spec!r} must be a name or an object with a 'name'")
    name = spec.get("name")
    if name not in PROFILES:
        raise SettingsError(f"unknown profile {name!r}; allowed: {', '.join(PROFILES)}")
    allowed = PROFILES[name]
    unknown = sorted(set(spec) - {"name"} - set(allowed))
    if unknown:
        hint = ", ".join(allowed) if allowed else "none"
        raise SettingsError(f"profile {name} has no parameter {', '.join(unknown)}; allowed: {hint}")
    params: dict[str, float] = {}
    for key, (default, lo, hi, _help) in allowed.items():
        value = spec.get(key, default)
        if value is not None:
            params[key] = check_number(f"profile {name}: {key}", value, lo, hi)
    if name == "spike" and params["length"] >= params["every"]:
        raise SettingsError(f"profile spike: length={params['length']:g} must be shorter than every={params['every']:g}")
    return Profile(name, params)


def preset_rate(name: str) -> float:
    for key, rate in PRESETS.items():
        if key.lower() == str(name).strip().lower():
            return float(rate)
    raise SettingsError(f"unknown preset {name!r}; allowed: {', '.join(repr(k) for k in PRESETS)}")
