"""The soak's verdict: pure functions from samples and batch metrics to pass/fail with the figure.

Every criterion is a `Criterion` (passed True/False, or None when the run was too short to
tell, with the figure that decided it). Time windows scale with the run: the warm-up and
the comparison window are 10 minutes in a run of an hour or more and a sixth of the run
below that (`window_s`). Periods around a chaos kill or the outage (from the kill until
the part is healthy again plus two trigger intervals) are `Excluded` from the work, lag
and stall criteria: a restart carries a backlog on purpose.

* **memory flat**: per process series (``pss_<part>_mb``, the part's whole process
  group, and ``rss_<part>.jvm_mb`` for a JVM in it), after the warm-up (for the job, which
  holds the dedupe state, the same warm-up as its batch work below), on the longest
  stretch with one pid (a restart starts a new process): a least-squares line, its slope
  in MiB/h, and growth = slope x span / fitted value at the start <= 5 %. Prometheus is
  the one exception (``BOUNDED_BY_DESIGN``): its head block holds every sample of the last
  1.5 x its 2-hour block range before it is written out, so it grows through the first three
  hours of any run by design; it is judged by the fitted line projected to that ceiling
  against a budget ("memory bounded");
* **memory total**: the peak of the PSS summed over every part ≤ 8 GiB (``TOTAL_MEMORY_MIB``);
* **work flat**: median duration of the batches with data in the last window <= 1.2 x
  the median in the first window after the warm-up, which for the batches lasts until the
  dedupe state evicts as many keys as it takes in (the dedupe window plus two triggers,
  `work_warmup_s`); the state (rows when the job exports
  them, else bytes of the state folder) in the last window <= 1.2 x its level right after
  the dedupe window has passed;
* **upkeep never stalls**: the start of each batch follows the previous one by at most
  two trigger intervals (one trigger of stall);
* **lag bounded**: records behind latest never above two batches' worth (2 x rate x
  trigger); freshness p95 of the last window <= 1.2 x that of the first after warm-up;
* **disk**: growth per hour (fitted), projection to one day against the free space, each
  part by what bounds it (broker logs: the topic's record lifetime; Delta: none; checkpoints:
  the state's settling time); each Delta table's active file count bounded
  (the last quarter's maximum <= 1.5 x the first half's maximum after warm-up + 5).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MIB = 1.0
HOUR = 3600.0
MEMORY_GROWTH = 0.05
WORK_GROWTH = 1.20
STATE_GROWTH = 1.20
FRESHNESS_GROWTH = 1.20
FILES_FACTOR, FILES_SLACK = 1.5, 5
LAG_BATCHES = 2.0
MIN_FIT_POINTS = 4
# part -> (seconds after start when its memory stops growing by design, budget in MiB)
BOUNDED_BY_DESIGN = {"prometheus": (3 * HOUR, 256.0)}
# parts whose memory holds the job's dedupe state (RocksDB in the job's JVM): their warm-up
# lasts until that state evicts as many keys as it takes in (`work_warmup_s`)
HOLDS_STATE = ("job",)
TOTAL_MEMORY_MIB = 8 * 1024.0   # the whole product, Christmas rate included (issue 19)
FULL_WINDOW_S = 600.0


@dataclass
class Criterion:
    name: str
    passed: bool | None      # None: not enough data to tell
    figure: str
    detail: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def mark(self) -> str:
        return {True: "pass", False: "FAIL", None: "n/a"}[self.passed]


@dataclass(frozen=True)
class Excluded:
    """[start, end) epoch seconds to leave out (a kill and its recovery, the outage)."""

    start: float
    end: float
    part: str = ""   # what was killed ("job", "broker-1", ...), "outage" for the outage

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


def interrupted_by_app_kill(visit: dict[str, Any], kills: list[dict[str, Any]]) -> bool:
    """A failed page visit that the chaos caused: it was under way while the app was down, from
    its kill -9 until it was healthy again (the browser only starts a round while the app is up,
    but a round under way goes on; the chaos hour `20261206-192528-3ec8` lost one visit whose
    page was loading when the app was killed, 0.5 s into it)."""
    start = float(visit.get("t", 0.0))
    end = start + float(visit.get("seconds") or 0.0)
    for k in kills:
        if k.get("part") != "app" or k.get("at") is None:
            continue
        back = k.get("healthy_at") or k.get("back_at")
        if back is None:   # never came back: that is the kill's own failure
            continue
        if start <= float(back) and end >= float(k["at"]):
            return True
    return False


def window_s(duration_s: float) -> float:
    """Warm-up and comparison window: 10 minutes from an hour up, a sixth of the run below."""
    return FULL_WINDOW_S if duration_s >= 6 * FULL_WINDOW_S else duration_s / 6.0


def outside(t: float, excluded: list[Excluded]) -> bool:
    return not any(e.covers(t) for e in excluded)


CATCH_UP_PARTS = ("job", "outage")   # spans after which the job reads a backlog in one larger batch


def too_short(points: list[tuple[float, float]], w: float) -> bool:
    """Samples (t, value) that span less than half of a window `w`: too few to give its level."""
    return not points or points[-1][0] - points[0][0] < w / 2


def fit_line(ts: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares (slope per second, value at ts[0]); None with fewer than MIN_FIT_POINTS points."""
    if len(ts) < MIN_FIT_POINTS or len(set(ts)) < 2:
        return None
    t = np.asarray(ts, dtype=float) - float(ts[0])
    slope, intercept = np.polyfit(t, np.asarray(ys, dtype=float), 1)
    return float(slope), float(intercept)


# ---- memory ------------------------------------------------------------------------------
def longest_segment(points: list[tuple[float, float, int | None]]) -> list[tuple[float, float]]:
    """(t, value) of the longest run of consecutive points with one pid (None pids split runs)."""
    best: list[tuple[float, float]] = []
    cur: list[tuple[float, float]] = []
    last_pid: int | None = None
    for t, v, pid in points:
        if pid is None or pid != last_pid:
            cur = []
        if pid is not None:
            cur.append((t, v))
        last_pid = pid
        if len(cur) > len(best):
            best = list(cur)
    return best


def memory_growth(name: str, points: list[tuple[float, float, int | None]], start: float) -> Criterion:
    """One process series: (t, RSS MiB, pid) -> slope in MiB/h and growth over the fitted span."""
    seg = longest_segment([p for p in points if p[0] >= start])
    fit = fit_line([t for t, _ in seg], [v for _, v in seg])
    if fit is None:
        return Criterion(f"memory flat: {name}", None, f"{len(seg)} samples after warm-up", "too few to fit")
    slope, at_start = fit
    span = seg[-1][0] - seg[0][0]
    growth = slope * span / at_start if at_start > 0 else float("inf")
    figure = (f"{slope * HOUR:+,.1f} MiB/h; {at_start:,.0f} -> {at_start + slope * span:,.0f} MiB "
              f"over {span / 60:.0f} min ({growth:+.1%})")
    return Criterion(f"memory flat: {name}", growth <= MEMORY_GROWTH, figure,
                     f"growth over the span ≤ {MEMORY_GROWTH:.0%}",
                     {"slope_mib_h": round(slope * HOUR, 2), "growth": round(growth, 4), "start_mib": round(at_start, 1),
                      "span_s": round(span, 1)})


def memory_series(samples: list[dict[str, Any]]) -> dict[str, list[tuple[float, float, int | None]]]:
    """Every memory series of the samples with the pid that goes with it: per part its process
    group's PSS (``pss_<part>_mb``; its RSS in samples taken before the sampler read PSS, since
    summed RSS counts the pages of forked workers once per process), and ``rss_<part>.jvm_mb``."""
    out: dict[str, list[tuple[float, float, int | None]]] = {}
    for s in samples:
        for key, v in s.items():
            if v is None or not key.endswith("_mb") or not key.startswith(("rss_", "pss_")):
                continue
            part = key[4:-3]
            if key.startswith("rss_") and "." not in part and s.get(f"pss_{part}_mb") is not None:
                continue   # the group's PSS stands for it
            pid = s.get(f"pid_{part.split('.')[0]}")
            out.setdefault(part, []).append((float(s["t"]), float(v), pid))
    return out


def memory_peak(samples: list[dict[str, Any]], t0: float, budget_mib: float = TOTAL_MEMORY_MIB) -> Criterion:
    """The product's memory at its highest: the PSS summed over every part, against a budget."""
    pts = [(float(s["mem_total_mb"]), float(s["t"])) for s in samples if s.get("mem_total_mb")]
    name = "memory total: peak"
    if not pts:
        return Criterion(name, None, "no total memory sampled", "samples taken before the sampler summed PSS")
    peak, at = max(pts)
    median = float(np.median([v for v, _ in pts]))
    return Criterion(name, peak <= budget_mib,
                     f"peak {peak / 1024:,.2f} GiB at minute {(at - t0) / 60:.0f} (median {median / 1024:,.2f} GiB)",
                     f"PSS summed over every part ≤ {budget_mib / 1024:g} GiB",
                     {"peak_mib": round(peak, 1), "median_mib": round(median, 1), "at": at, "budget_mib": budget_mib})


def warmed_up(points: list[tuple[float, float, int | None]], warmup_s: float) -> list[tuple[float, float, int | None]]:
    """Pure: the points of each pid from `warmup_s` after that pid was first seen: a process the
    supervisor restarted has its own warm-up, like the one that ran from the start."""
    first: dict[int, float] = {}
    out = []
    for t, v, pid in points:
        if pid is not None:
            first.setdefault(pid, t)
            if t >= first[pid] + warmup_s:
                out.append((t, v, pid))
    return out


def memory_flat(samples: list[dict[str, Any]], t0: float, duration_s: float,
                state_warmup_s: float = 0.0) -> list[Criterion]:
    """Per process series after its warm-up: the window, and for a part that holds the dedupe
    state (`HOLDS_STATE`) at least `state_warmup_s` (`work_warmup_s`): its state store takes
    in a batch of keys per trigger and evicts none until the dedupe window has passed, so its
    memory grows by design until then, like its batch work."""
    w = window_s(duration_s)
    out = []
    for name, pts in sorted(memory_series(samples).items()):
        warm = max(w, state_warmup_s) if name.split(".")[0] in HOLDS_STATE else w
        pts = warmed_up(pts, warm)
        out.append(memory_bounded(name, pts, t0 + warm, t0, *BOUNDED_BY_DESIGN[name]) if name in BOUNDED_BY_DESIGN
                   else memory_growth(name, pts, t0 + warm))
    return out


def memory_bounded(name: str, points: list[tuple[float, float, int | None]], start: float, t0: float,
                   ceiling_s: float, budget_mib: float) -> Criterion:
    """A process whose memory grows until `ceiling_s` after the start by design: the fitted
    line projected to then must stay within `budget_mib`."""
    seg = longest_segment([p for p in points if p[0] >= start])
    fit = fit_line([t for t, _ in seg], [v for _, v in seg])
    title = f"memory bounded: {name}"
    if fit is None:
        return Criterion(title, None, f"{len(seg)} samples after warm-up", "too few to fit")
    slope, at_start = fit
    projected = at_start + max(0.0, slope) * max(0.0, t0 + ceiling_s - seg[0][0])
    figure = (f"{slope * HOUR:+,.1f} MiB/h from {at_start:,.0f} MiB; projected to {ceiling_s / HOUR:.0f} h "
              f"after the start: {projected:,.0f} MiB")
    return Criterion(title, projected <= budget_mib, figure,
                     f"grows by design for {ceiling_s / HOUR:.0f} h; projected ≤ {budget_mib:,.0f} MiB",
                     {"slope_mib_h": round(slope * HOUR, 2), "projected_mib": round(projected, 1),
                      "start_mib": round(at_start, 1), "budget_mib": budget_mib})


# ---- work --------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def work_warmup_s(duration_s: float, dedupe_s: float = 0.0, trigger_s: float = 0.0) -> float:
    """When a batch's work stops growing by design: after the comparison window, and after the
    dedupe window plus two triggers. Until the watermark has passed the dedupe window no key
    expires; the batch after it evicts part of a batch's keys, the one after that a whole
    batch's (evicted = updated from then on). A batch before that does less work by design."""
    return max(window_s(duration_s), state_full_s(dedupe_s, trigger_s))


def state_full_s(dedupe_s: float, trigger_s: float) -> float:
    """Seconds from the start until the dedupe state holds a whole window of keys (and evicts a
    batch's worth per batch): the window plus two triggers; 0 without a dedupe window."""
    return dedupe_s + 2 * trigger_s if dedupe_s > 0 else 0.0


def work_flat(batches: list[dict[str, Any]], t0: float, t_end: float, excluded: list[Excluded],
              dedupe_s: float = 0.0, trigger_s: float = 0.0) -> Criterion:
    """Median batch duration (batches with data) of the last window vs the first after warm-up
    (`work_warmup_s`: the dedupe state evicting as much as it takes in)."""
    w = window_s(t_end - t0)
    start = t0 + work_warmup_s(t_end - t0, dedupe_s, trigger_s)
    ok = [b for b in batches if (b.get("input_rows") or 0) > 0 and b.get("duration_s") is not None
          and outside(float(b["trigger_time"]), excluded)]
    first = [float(b["duration_s"]) for b in ok if start <= float(b["trigger_time"]) < start + w]
    last = [float(b["duration_s"]) for b in ok if float(b["trigger_time"]) >= t_end - w]
    a, z = _median(first), _median(last)
    if a is None or z is None or t_end - w < start + w:
        return Criterion("work flat: batch duration", None, f"{len(first)} early and {len(last)} late batches",
                         f"needs batches in both windows (the first from minute {(start - t0) / 60:g})")
    ratio = z / a if a > 0 else float("inf")
    why = "the dedupe state evicting what it takes in" if dedupe_s > 0 else "after warm-up"
    return Criterion("work flat: batch duration", ratio <= WORK_GROWTH,
                     f"median {a:.2f} s (minutes {(start - t0) / 60:g}-{(start + w - t0) / 60:g}, {why}) "
                     f"-> {z:.2f} s (last {w / 60:g} min); x{ratio:.2f}",
                     f"last ≤ {WORK_GROWTH:g} x first", {"first_s": round(a, 3), "last_s": round(z, 3),
                                                          "ratio": round(ratio, 3),
                                                          "from_min": round((start - t0) / 60, 2)})


def state_settled_s(duration_s: float, dedupe_s: float, trigger_s: float, history_s: float) -> float:
    """Seconds from the start until the state folder saw-tooths in its band: the state is full
    (`work_warmup_s`), then the checkpoint's history of that full state has filled."""
    return max(window_s(duration_s), state_full_s(dedupe_s, trigger_s) + history_s)


def state_levels_off(samples: list[dict[str, Any]], key: str, t0: float, t_end: float, dedupe_s: float,
                     label: str, history_s: float = 0.0, trigger_s: float = 0.0,
                     excluded: list[Excluded] | None = None) -> Criterion:
    """The state's level once it has settled vs its level in the last window.

    The keys stop growing once the dedupe window plus two triggers has passed (`work_warmup_s`).
    The state folder holds more than the keys: the changelogs and snapshots of the last batches,
    the checkpoint's history (`history_s`, job.spark.state_folder_batches triggers). That history
    is of a full state only once the state is full, so the folder settles `history_s` after the
    state does, not at whichever of the two comes later: in the soak hour 20261206-160706-eb9b
    (10-minute window, 18-batch history) it grew until minute 38 and then saw-toothed in a band,
    and judged from minute 18 the band's top read as growth (x1.23).

    `excluded` (a kill until its recovery, the outage): after the job's own kills and the outage
    the job reads the backlog in a larger batch than the steady ones, and that batch's changelog
    stays in the folder for the whole history, so those spans are left out until `history_s`
    after their end (the other parts' spans as they are: the job did not stop). The level once settled is
    then the first window of samples outside them; in the chaos hour 20261206-223007-9f92 the
    catch-ups of two job kills (minutes 30.6 and 53, 18-batch history) took the folder from 482
    to 586 MiB. A run with no stretch outside them long enough for both windows reads n/a."""
    w = window_s(t_end - t0)
    settled = t0 + state_settled_s(t_end - t0, dedupe_s, trigger_s, history_s)
    spans = [Excluded(e.start, e.end + (history_s if e.part in CATCH_UP_PARTS else 0.0), e.part)
             for e in excluded or []]
    kept = [(s["t"], float(s[key])) for s in samples
            if s.get(key) is not None and s["t"] >= settled and outside(s["t"], spans)]
    start = kept[0][0] if kept else settled
    base = [(t, v) for t, v in kept if t < start + w]
    last = [(t, v) for t, v in kept if t >= t_end - w]
    name = f"work flat: state {label}"
    if not spans and (not base or not last or t_end - w < settled):
        return Criterion(name, None, f"run shorter than the state's settling time ({(settled - t0) / 60:g} min) "
                         "+ two windows", "needs samples after the state has settled and at the end")
    if spans and (too_short(base, w) or too_short(last, w) or t_end - w < start + w):
        return Criterion(name, None, f"no stretch of {w / 60:g} min once settled (minute {(settled - t0) / 60:g}) and "
                         f"another at the end outside the kills' catch-up (+ {history_s / 60:g} min of history)",
                         "needs samples after the state has settled and at the end, outside the kills",
                         {"settled_min": round((settled - t0) / 60, 1), "excluded": len(spans)})
    a, z = max(v for _, v in base), max(v for _, v in last)
    ratio = z / a if a > 0 else (1.0 if z == 0 else float("inf"))
    return Criterion(name, ratio <= STATE_GROWTH,
                     f"{a:,.0f} once settled (from minute {(start - t0) / 60:g}) -> {z:,.0f} at the end; x{ratio:.2f}",
                     f"end ≤ {STATE_GROWTH:g} x level once settled (the dedupe window, then the checkpoint's history)",
                     {"after": a, "end": z, "settled_min": round((start - t0) / 60, 1)})


# ---- upkeep, lag -------------------------------------------------------------------------
def upkeep_stall(batches: list[dict[str, Any]], trigger_s: float, excluded: list[Excluded]) -> Criterion:
    """The longest wait beyond one trigger between the starts of two batches."""
    starts = sorted(float(b["trigger_time"]) for b in batches if b.get("trigger_time") is not None)
    gaps = [(b - a - trigger_s, a) for a, b in zip(starts, starts[1:], strict=False)
            if outside(a, excluded) and outside(b, excluded)]
    if not gaps:
        return Criterion("upkeep never stalls the stream", None, "fewer than two batches", "")
    worst, at = max(gaps)
    return Criterion("upkeep never stalls the stream", worst <= trigger_s,
                     f"longest stall {max(0.0, worst):.1f} s beyond the trigger ({trigger_s:g} s), "
                     f"{len([g for g, _ in gaps if g > trigger_s])} over",
                     "no batch starts more than two triggers after the one before",
                     {"worst_stall_s": round(worst, 2), "at": at})


def lag_bounded(samples: list[dict[str, Any]], rate: float, trigger_s: float, t0: float,
                excluded: list[Excluded]) -> Criterion:
    """Records behind latest never above two batches' worth (after the first batch, outside kills)."""
    bound = LAG_BATCHES * rate * trigger_s
    lags = [(float(s["lag_records"]), s["t"]) for s in samples if s.get("lag_records") is not None
            and s["t"] >= t0 + trigger_s and outside(s["t"], excluded)]
    if not lags:
        return Criterion("lag bounded: records behind", None, "no lag samples", "")
    worst, at = max(lags)
    return Criterion("lag bounded: records behind", worst <= bound,
                     f"max {worst:,.0f} records behind (bound {bound:,.0f} = 2 batches of {rate:,.0f} tx/s x "
                     f"{trigger_s:g} s)", "never above two batches' worth",
                     {"max": worst, "bound": bound, "at": at})


def freshness_flat(event_times: np.ndarray, seconds: np.ndarray, t0: float, t_end: float,
                   excluded: list[Excluded]) -> Criterion:
    """Freshness p95 of rows whose event time is in the last window vs the first after warm-up.

    Rows that arrived or became visible inside an excluded period (a kill until its recovery)
    are left out: a sale in the batch that a kill cut short waits for the recovery."""
    w = window_s(t_end - t0)
    name = "lag bounded: freshness p95"
    if event_times.size == 0:
        return Criterion(name, None, "no high-value rows", "")
    keep = np.isfinite(seconds) & np.array(
        [outside(float(t), excluded) and (not np.isfinite(d) or outside(float(t + d), excluded))
         for t, d in zip(event_times, seconds, strict=True)], dtype=bool)
    first = seconds[keep & (event_times >= t0 + w) & (event_times < t0 + 2 * w)]
    # rows of the last window: event times up to one window before the last one the job saw
    end = float(event_times[keep].max()) if keep.any() else t_end
    last = seconds[keep & (event_times >= end - w)]
    if first.size == 0 or last.size == 0 or end - w < t0 + 2 * w:
        return Criterion(name, None, f"{first.size} early and {last.size} late rows", "needs rows in both windows")
    a, z = float(np.percentile(first, 95)), float(np.percentile(last, 95))
    ratio = z / a if a > 0 else float("inf")
    return Criterion(name, ratio <= FRESHNESS_GROWTH, f"p95 {a:.1f} s (first window) -> {z:.1f} s (last); x{ratio:.2f}",
                     f"last ≤ {FRESHNESS_GROWTH:g} x first", {"first_p95_s": round(a, 2), "last_p95_s": round(z, 2)})


# ---- disk ----------------------------------------------------------------------------------
def _slope(samples: list[dict[str, Any]], key: str, start: float) -> tuple[float, float, float] | None:
    """(fitted MiB/s, last value, last time) of `key` from `start` on, or None without two samples."""
    pts = [(float(s["t"]), float(s[key])) for s in samples if s.get(key) is not None and s["t"] >= start]
    fit = fit_line([t for t, _ in pts], [v for _, v in pts])
    return None if fit is None else (fit[0], pts[-1][1], pts[-1][0])


def disk_growth(samples: list[dict[str, Any]], t0: float, duration_s: float, retention_s: float,
                free_mb: float | None, settle_s: float = 0.0) -> Criterion:
    """Growth of the run's data folder per hour (fitted after warm-up) and its size after one day.

    Each part is projected by what bounds it:
    * the broker's logs grow at their fitted rate until the records' lifetime (`retention_s`) has
      passed since the start, then old segments go as new ones come;
    * the Delta tables are the product's output: they grow at their fitted rate the whole day;
    * the checkpoints (mostly the dedupe state) grow only until the state has settled
      (`settle_s` after the start: the dedupe window and the checkpoint's history), then saw-tooth
      around a level ("work flat: state" judges that level), so they grow at most until then.
    Samples without the per-part sizes are projected as one total, at its fitted rate."""
    start = t0 + window_s(duration_s)
    total = _slope(samples, "disk_total_mb", start)
    if total is None:
        return Criterion("disk: growth and one-day projection", None, "too few samples after warm-up", "")
    now_mb, now_t = total[1], total[2]
    elapsed = now_t - t0
    grows_for = {"broker": max(0.0, min(86400.0, retention_s) - elapsed), "delta": max(0.0, 86400.0 - elapsed),
                 "checkpoints": max(0.0, settle_s - elapsed)}
    parts = {k: _slope(samples, f"disk_{k}_mb", start) for k in grows_for}
    if all(v is not None for v in parts.values()):
        rates = {k: max(0.0, v[0]) for k, v in parts.items() if v is not None}
        day_mb = now_mb + sum(rates[k] * grows_for[k] for k in rates)
        how = ", ".join(f"{k} {v[0] * HOUR:+,.0f}" for k, v in parts.items() if v is not None)
        split = f" ({how} MiB/h)"
        besides_broker = sum(rates[k] * grows_for[k] for k in rates if k != "broker")
        broker_rate = rates["broker"]
    else:
        day_mb = now_mb + max(0.0, total[0]) * max(0.0, min(86400.0, retention_s) - elapsed)
        split = ""
        besides_broker, broker_rate = 0.0, max(0.0, total[0])   # one total: the lifetime bounds all of it
    ok = None if free_mb is None else day_mb <= now_mb + free_mb
    room = "" if free_mb is None else f"; {free_mb / 1024:,.1f} GiB free"
    lifetime = {}
    if ok is False:
        hours, advice = lifetime_that_fits(free_mb - besides_broker, broker_rate, elapsed)
        room, lifetime = f"{room}; {advice}", {"fits_retention_h": hours}
    return Criterion("disk: growth and one-day projection", ok,
                     f"{total[0] * HOUR:+,.0f} MiB/h{split}; {now_mb:,.0f} MiB now -> {day_mb / 1024:,.1f} GiB after "
                     f"one day{room}",
                     "the one-day projection fits in the free space (broker logs up to the records' lifetime, Delta "
                     "all day, checkpoints until the state settles)",
                     {"mib_per_h": round(total[0] * HOUR, 1), "now_mib": round(now_mb, 1), "day_mib": round(day_mb, 1)}
                     | {f"{k}_mib_per_h": round(v[0] * HOUR, 1) for k, v in parts.items() if v is not None} | lifetime)


def lifetime_that_fits(room_mb: float, broker_rate: float, elapsed: float) -> tuple[float, str]:
    """What a failed projection tells the team to change: the longest record lifetime (hours,
    rounded down, 0 when none) whose broker logs, growing `broker_rate` MiB/s until the lifetime has
    passed, fit in `room_mb` (the free space that the other parts' growth leaves), and its words."""
    if room_mb <= 0:
        return 0.0, "does not fit even without more broker logs (Delta and checkpoints alone outgrow the free space)"
    hours = (elapsed + room_mb / broker_rate) / HOUR if broker_rate > 0 else 24.0
    hours = math.floor(hours * 10) / 10   # rounded down: a lifetime that is said to fit does
    return hours, (f"fits with a record lifetime (TORMENTA_RETENTION) of at most {hours:,.1f} h, "
                   "or with more free space for the broker's logs (on a cluster, each node's own disk)")


def files_bounded(samples: list[dict[str, Any]], key: str, t0: float, t_end: float, *, batches_run: int = 0,
                  cycle_batches: int = 0) -> Criterion:
    """A table's active file count: the last quarter's maximum vs the first half's (after warm-up).

    `cycle_batches` (`UpkeepPlan.batches_to_first_cycle`, 0 = upkeep off): a run of fewer
    batches has seen no compaction, so its file count only grew with the batches; that
    says nothing of whether compaction bounds it (n/a)."""
    w = window_s(t_end - t0)
    mid = t0 + w + (t_end - t0 - w) / 2
    first = [float(s[key]) for s in samples if s.get(key) is not None and t0 + w <= s["t"] < mid]
    last = [float(s[key]) for s in samples if s.get(key) is not None and s["t"] >= t_end - (t_end - t0) / 4]
    name = f"disk: files of {key.removeprefix('files_')}"
    if not first or not last:
        return Criterion(name, None, "no file counts", "")
    if cycle_batches and batches_run < cycle_batches:
        return Criterion(name, None, f"{batches_run} batches in the run; every table is compacted once after "
                                     f"{cycle_batches}", "needs a whole compaction cycle in the run",
                         {"batches": batches_run, "cycle_batches": cycle_batches})
    a, z = max(first), max(last)
    bound = FILES_FACTOR * a + FILES_SLACK
    return Criterion(name, z <= bound, f"max {a:,.0f} files (first half) -> {z:,.0f} (last quarter); bound {bound:,.0f}",
                     f"last quarter ≤ {FILES_FACTOR:g} x first half + {FILES_SLACK}", {"first": a, "last": z})


# ---- all together ------------------------------------------------------------------------------
@dataclass
class SoakInputs:
    samples: list[dict[str, Any]]
    batches: list[dict[str, Any]]
    t0: float
    t_end: float
    rate: float
    trigger_s: float
    dedupe_s: float
    retention_s: float
    free_mb: float | None = None
    excluded: list[Excluded] = field(default_factory=list)
    event_times: np.ndarray = field(default_factory=lambda: np.array([]))
    freshness_s: np.ndarray = field(default_factory=lambda: np.array([]))
    state_history_s: float = 0.0   # time for the checkpoint's changelog history to fill (job.spark)
    compaction_cycle_batches: int = 0  # batches until every table was compacted once (job.tables.UpkeepPlan)


def judge(x: SoakInputs) -> list[Criterion]:
    """Every criterion of the soak, in the report's order."""
    duration = x.t_end - x.t0
    out = memory_flat(x.samples, x.t0, duration, work_warmup_s(duration, x.dedupe_s, x.trigger_s))
    out.append(memory_peak(x.samples, x.t0))
    out.append(work_flat(x.batches, x.t0, x.t_end, x.excluded, x.dedupe_s, x.trigger_s))
    # rows only when the job really counts them: an all-zero series is a query that exports 0, not a state
    state_key = "state_rows" if any(s.get("state_rows") for s in x.samples) else "state_mb"
    rows = state_key == "state_rows"   # the rows do not hold history; the folder's bytes do
    out.append(state_levels_off(x.samples, state_key, x.t0, x.t_end, x.dedupe_s,
                                "rows" if rows else "bytes on disk (MiB)", 0.0 if rows else x.state_history_s,
                                x.trigger_s, x.excluded))
    out.append(upkeep_stall(x.batches, x.trigger_s, x.excluded))
    out.append(lag_bounded(x.samples, x.rate, x.trigger_s, x.t0, x.excluded))
    out.append(freshness_flat(x.event_times, x.freshness_s, x.t0, x.t_end, x.excluded))
    out.append(disk_growth(x.samples, x.t0, duration, x.retention_s, x.free_mb,
                           state_settled_s(duration, x.dedupe_s, x.trigger_s, x.state_history_s)))
    tables = sorted({k for s in x.samples for k in s if k.startswith("files_")})
    out += [files_bounded(x.samples, k, x.t0, x.t_end, batches_run=len(x.batches),
                          cycle_batches=x.compaction_cycle_batches) for k in tables]
    return out


def overall(criteria: list[Criterion]) -> str:
    """'pass' when nothing failed (n/a allowed), else 'fail'."""
    return "fail" if any(c.passed is False for c in criteria) else "pass"
