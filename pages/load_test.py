"""Load test: "Will it hold at Christmas?" -- start a closed-loop run, watch its progress, read the
verdict, download the report; and the capacity calculator.

A run is `python -m pipeline loadtest` started in the background (`pipeline.loadtest.runs.launch`):
it survives page reloads, writes its progress to its run folder and is stopped cleanly with
the Stop button (SIGTERM). Every figure here comes from `pipeline.loadtest` / `pipeline.loadtest.capacity`.
Operators only: the page stops for anyone else, and Start/Stop go through
`pages.actions.start_load_test` / `stop_load_test`, which check the role again.
"""

from __future__ import annotations

import json
import site
from pathlib import Path

import pandas as pd
import streamlit as st

site.addsitedir(str(Path(__file__).resolve().parents[1]))  # run by itself, a page still finds the project
from pages.actions import start_load_test, stop_load_test
from pages.common import current_user, get_settings, guard, operator_page, page_header, show_problem
from pipeline.loadtest.capacity import (
    CapacityInput,
    capacity,
    compression_ratio_for,
    measured_inputs,
    sample_record_bytes,
)
from pipeline.loadtest.options import LoadTestOptions
from pipeline.loadtest.plan import PLANS
from pipeline.loadtest.report import figures, verdict_rows
from pipeline.loadtest.result import LoadTestResult
from pipeline.loadtest.runs import RunEntry, list_runs
from pipeline.loadtest.verdict import RULES
from pipeline.read.units import compact

page_header("Load test", "Will it hold at Christmas? Drive the real emulator and job through a plan "
            "(warm-up, ramp, hold at the peak, beyond) on a fresh topic, then read the verdict.")
operator_page()
SS = st.session_state


@st.cache_data(ttl=2, show_spinner=False)
def runs() -> list[RunEntry]:
    return list_runs(get_settings())


@st.cache_data(ttl=60, show_spinner=False)
def samples_of(run_dir: str) -> list[dict]:
    try:
        return json.loads((Path(run_dir) / "samples.json").read_text())
    except (OSError, ValueError):
        return []


@st.cache_data(ttl=3600, show_spinner=False)
def record_bytes() -> float:
    return sample_record_bytes(get_settings().sample_file) or 220.0


def form_options() -> LoadTestOptions:
    return LoadTestOptions(profile=SS.lt_profile, scale=float(SS.lt_scale), trigger_s=float(SS.lt_trigger),
                           ceiling=float(SS.lt_ceiling), beyond=bool(SS.lt_beyond))


def start_run() -> None:
    """Callback of the Start button."""
    try:
        run_id, _ = start_load_test(current_user(), get_settings(), form_options())  # checks the role first
        SS.lt_started = run_id
        SS.pop("lt_error", None)
        runs.clear()
    except Exception as exc:  # noqa: BLE001 - shown above the form after the rerun
        SS.lt_error = exc


def stop_run(run_id: str) -> None:
    try:
        stop_load_test(current_user(), get_settings(), run_id)  # checks the role first
    except Exception as exc:  # noqa: BLE001 - shown above the form after the rerun
        SS.lt_error = exc
    runs.clear()


def run_form() -> None:
    """Profile, scale, trigger, ceiling and beyond; the plan they give; the Start button."""
    active = [r for r in runs() if r.running]
    c = st.columns(4)
    c[0].selectbox("Profile", list(PLANS), key="lt_profile", help="; ".join(f"{k}: {v['help']}" for k, v in PLANS.items()))
    p = PLANS[SS.lt_profile]
    c[1].number_input("Duration scale", 0.05, 10.0, 1.0, 0.05, key="lt_scale",
                      help="Multiplies every step's duration (1 = the real plan, 0.25 = a quick look)")
    c[2].number_input("Trigger interval (s)", 0.5, 600.0, float(p["trigger_s"]), 0.5, key="lt_trigger",
                      help="The job's micro-batch trigger during the test")
    c[3].number_input("Ceiling (tx/s)", float(p["peak"]), 2_000_000.0, float(p["ceiling"]), 5_000.0,
                      key="lt_ceiling", help="Highest rate of the beyond-peak steps")
    st.toggle("Push beyond the peak until something breaks", value=True, key="lt_beyond")
    try:
        plan = form_options().build_plan()
        st.caption(plan.describe() + f". About {plan.planned_seconds / 60:.1f} minutes of load, plus start-up "
                   "(~30 s) and catch-up.")
    except Exception as exc:  # noqa: BLE001
        show_problem(exc)
    st.button("Start load test", type="primary", on_click=start_run, disabled=bool(active), key="lt_start",
              help="Runs in the background; it uses the running broker (or starts one) and a fresh topic")


@st.fragment(run_every="2s")
def progress() -> None:
    """The running test's progress bar, live figures, last events and Stop button."""
    current = [r for r in list_runs(get_settings()) if r.running]
    if not current:
        if SS.get("lt_started"):
            st.success(f"Run {SS.lt_started} finished: see the Results tab.", icon=":material/check:")
        else:
            st.info("No load test is running.", icon=":material/science:")
        return
    r = current[0]
    pr = r.progress or {}
    st.progress(min(1.0, float(pr.get("fraction") or 0.0)),
                text=f"Run {r.run_id}: {pr.get('phase', 'starting')} — {pr.get('step') or ''} "
                     f"({pr.get('elapsed_s', 0):.0f} s)")
    last = pr.get("last") or {}
    m = st.columns(4)
    m[0].metric("Target rate (tx/s)", compact(last.get("target_rate") or 0))
    m[1].metric("Achieved rate (tx/s)", compact(last.get("achieved_rate") or 0))
    m[2].metric("Lag (records)", compact(last.get("lag_records") or 0),
                help="Broker log end minus the job's committed offsets")
    lag_s = last.get("lag_s")
    m[3].metric("Oldest unprocessed record", f"{compact(lag_s, 1)} s" if lag_s is not None else "–")
    for e in (pr.get("events") or [])[-4:]:
        st.caption(e["text"])
    st.button("Stop this run", key="lt_stop", on_click=stop_run, args=(r.run_id,),
              help="Ends the current step, lets the job catch up briefly, writes the report")


def results() -> None:
    """Pick a finished run: its answer, verdict table, rules, report download and charts."""
    all_runs = runs()
    for r in all_runs:
        if r.problem:
            st.warning(f"Run {r.run_id} cannot be shown: {r.problem}", icon=":material/error:")
    done = [r for r in all_runs if r.result is not None]
    if not done:
        st.info("No finished load test yet. Start one on the Run tab or with "
                "`python -m pipeline loadtest --profile christmas`.", icon=":material/hourglass_empty:")
        return
    labels = {r.run_id: f"{r.run_id} · {r.result.plan.name} · {r.result.state}" for r in done}
    chosen = st.selectbox("Run", list(labels), format_func=labels.get, key="lt_run")
    run = next(r for r in done if r.run_id == chosen)
    answer(run.result)
    st.dataframe(pd.DataFrame(verdict_rows(run.result)), hide_index=True, width="stretch")
    with st.expander("Rules of the verdict"):
        for k, v in RULES:
            st.markdown(f"- **{k}**: {v}")
    if run.report:
        st.download_button("Download the HTML report", run.report.read_bytes(),
                           file_name=f"tormenta-loadtest-{chosen}.html", mime="text/html", key="lt_download")
    figs = dict(figures(run.result, samples_of(str(run.dir))))
    a, b = st.columns(2)
    for i, key in enumerate(("rates", "lag_seconds", "batch_duration", "cpu")):
        with (a if i % 2 == 0 else b):
            st.plotly_chart(figs[key], width="stretch", key=f"lt_fig_{key}")


def answer(res: LoadTestResult) -> None:
    summ, rec = res.summary, res.reconciliation
    st.markdown(f"**{summ.answer}**")
    m = st.columns(4)
    msr = summ.max_sustainable_rate
    m[0].metric("Maximum sustainable rate", f"{compact(msr)} tx/s" if msr is not None else "none")
    m[1].metric("Limiting stage", summ.limiting_stage or "none (ceiling)")
    m[2].metric(f"At the peak ({compact(summ.peak_rate)} tx/s)", summ.peak_verdict or "not reached")
    m[3].metric("Lost / duplicated ids", f"{compact(rec.lost)} / {compact(rec.duplicated)}",
                help=f"{rec.expected:,} high-value ids sent, {rec.actual_unique:,} in Delta; {rec.unexpected:,} unexpected")


def capacity_inputs() -> CapacityInput | None:
    """The calculator's inputs; defaults from the settings, the samples and the latest finished run."""
    s = get_settings()
    finished = [r.result for r in runs() if r.result is not None]
    measured = measured_inputs(finished[0] if finished else None)
    rb = record_bytes()
    c = st.columns(4)
    rate = c[0].number_input("Rate (tx/s)", 0.0, 5_000_000.0, 50_000.0, 1_000.0, key="cap_rate")
    size = c[1].number_input("Record size (bytes)", 10.0, 1_000_000.0, round(rb, 1), 10.0, key="cap_size",
                             help="Average JSON value; default measured on the sample transactions")
    rf = c[2].number_input("Replication factor", 1, 10, 1, key="cap_rf")
    brokers = c[3].number_input("Brokers", 1, 100, 1, key="cap_brokers")
    c = st.columns(4)
    retention_h = c[0].number_input("Retention (hours)", 0.1, 24.0 * 365, s.retention / 3600, 1.0, key="cap_ret")
    trigger = c[1].number_input("Trigger (s)", 0.1, 86400.0, float(s.trigger_interval), 1.0, key="cap_trigger")
    partitions = c[2].number_input("Partitions", 1, 10000, s.partitions, key="cap_parts")
    cores = c[3].number_input("Job cores", 1, 1024, s.job_cores, key="cap_cores")
    c = st.columns(2)
    compression = c[0].number_input(
        "Compression ratio on disk", 1.0, 50.0, compression_ratio_for(rb, measured.get("bytes_per_record_on_disk")),
        0.1, key="cap_comp", help="1 = none; the default comes from the last load test's bytes on disk when there is one")
    throughput = c[1].number_input("Job throughput (records per busy second)", 0.0, 1e9,
                                   float(measured.get("job_throughput", 0.0)), 1_000.0, key="cap_tp",
                                   help="0 = unknown; default: the best measured by the last load test")
    if int(rf) > int(brokers):
        st.warning(f"Replication factor {int(rf)} needs at least {int(rf)} brokers.", icon=":material/edit:")
        return None
    return CapacityInput(rate=rate, record_bytes=size, replication=int(rf), brokers=int(brokers),
                         retention_s=retention_h * 3600, trigger_s=trigger, partitions=int(partitions),
                         cores=int(cores), compression_ratio=compression,
                         max_offsets_per_trigger=s.max_offsets_per_trigger, job_throughput=throughput or None,
                         dedupe_window_s=s.dedup_window)


def capacity_figures() -> None:
    inp = capacity_inputs()
    if inp is None:
        return
    plan = capacity(inp)
    st.dataframe(pd.DataFrame(plan.rows(), columns=["figure", "value"]), hide_index=True, width="stretch")
    for w in plan.warnings:
        st.warning(w, icon=":material/warning:")
    st.markdown("**Assumptions**\n" + "\n".join(f"- {a}" for a in plan.assumptions))


tab_run, tab_results, tab_capacity = st.tabs(["Run", "Results", "Capacity calculator"])
with tab_run, guard():
    if "lt_error" in SS:
        show_problem(SS.lt_error)
    run_form()
    progress()
with tab_results, guard():
    results()
with tab_capacity, guard():
    capacity_figures()
