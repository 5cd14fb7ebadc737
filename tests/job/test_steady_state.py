"""What keeps the job flat over hours (issue 19): bounded native memory and status store,
a short checkpoint history, compaction in small steps, a dedupe state of one window (pure logic, and one real `java -version` with the service options)."""

import re
import subprocess

import pytest

from pipeline.contract.tables import TABLES
from pipeline.job import tables, transforms
from pipeline.job.spark import STEADY_STATE_CONF, launch_conf, session_conf, spark_submit_args
from pipeline.procs.jvm import NATIVE_TRIM_MS, java_accepts, service_heap_options
from tests.support.stack import make_settings


@pytest.mark.parametrize("storage", [None, "s3a://bucket/prefix"])
def test_the_session_bounds_state_memory_history_and_the_status_store(tmp_path, storage):
    conf = session_conf(make_settings(tmp_path, **({"storage_uri": storage} if storage else {})))
    rocksdb = "spark.sql.streaming.stateStore.rocksdb."
    assert conf[rocksdb + "boundedMemoryUsage"] == "true"
    assert 64 <= int(conf[rocksdb + "maxMemoryUsageMB"]) <= 1024
    assert int(conf["spark.sql.streaming.minBatchesToRetain"]) < 100  # Spark's default kept hours of changelogs
    assert int(conf["spark.sql.ui.retainedExecutions"]) <= 100  # Spark's default: 1,000
    assert int(conf["spark.ui.retainedJobs"]) <= 500 and int(conf["spark.ui.retainedStages"]) <= 500
    assert int(conf["spark.databricks.delta.optimize.minFileSize"]) < 2**30
    assert all(conf[k] == v for k, v in STEADY_STATE_CONF.items())
    # VACUUM's file listing runs as many tasks as this (Spark's default: 10,000)
    assert int(conf["spark.sql.sources.parallelPartitionDiscovery.parallelism"]) <= 100


def test_the_job_and_the_lane_reserve_their_heap_and_short_lived_sessions_do_not(tmp_path):
    settings = make_settings(tmp_path, driver_memory="3g")
    service = launch_conf(settings, service=True)["spark.driver.extraJavaOptions"].split()
    assert "-Xms3g" in service and "-XX:+AlwaysPreTouch" in service and "-XX:+UseG1GC" in service
    tool = launch_conf(settings)["spark.driver.extraJavaOptions"].split()
    assert not any(o.startswith("-Xms") or o == "-XX:+AlwaysPreTouch" for o in tool)
    submit = spark_submit_args(settings)
    assert "-Xms3g" in submit[submit.index("--driver-java-options") + 1].split()


def test_service_memory_options_start_a_real_jvm_with_them_in_effect():
    """The options are handed to every service JVM: the local java must start with all of them,
    and they must be what the JVM then runs with."""
    options = service_heap_options("64m").split()
    assert "-XX:+ExplicitGCInvokesConcurrent" in options
    out = subprocess.run(["java", *options, "-XX:+PrintFlagsFinal", "-version"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    flags = {m.group(1): m.group(2) for m in re.finditer(r"^\s*\S+\s+(\w+)\s+=\s+(\S+)", out.stdout, re.M)}
    assert flags["ExplicitGCInvokesConcurrent"] == "true" and flags["AlwaysPreTouch"] == "true"
    assert flags["InitialHeapSize"] == str(64 * 2**20)
    if java_accepts("-XX:TrimNativeHeapInterval=1000"):   # JDK 17.0.9 and later
        assert flags["TrimNativeHeapInterval"] == str(NATIVE_TRIM_MS)
    assert not java_accepts("-XX:NoSuchTormentaFlag=1")
    # and the job's session asks Spark's cleaner for that GC more often than its default 30 min
    assert STEADY_STATE_CONF["spark.cleaner.periodicGC.interval"] == "5min"


def run_plan(plan: tables.UpkeepPlan, batches: int) -> dict[int, tuple[str, str]]:
    """The step after each batch n (1..batches; its id is n - 1), by batch number."""
    return {b: step for b in range(1, batches + 1) if (step := plan.after_batch(b - 1))}


def test_upkeep_runs_one_step_per_batch_spread_over_the_cycle():
    names = list(TABLES)
    plan = tables.UpkeepPlan(names, every=30)
    steps = run_plan(plan, 90)
    per_cycle = [sorted(s for b, s in steps.items() if lo <= b < lo + 30) for lo in (30, 60)]
    every_step = sorted((n, op) for n in names for op in tables.UPKEEP_OPS)
    assert per_cycle == [every_step, every_step]  # each table compacted and vacuumed once a cycle
    assert min(b for b in steps) == 30  # nothing before the first cycle is full
    gaps = [b - a for a, b in zip(sorted(steps), sorted(steps)[1:], strict=False)]
    assert min(gaps) == 30 // len(every_step)  # spread out, never two after one batch


def test_upkeep_queue_with_more_steps_than_batches_still_runs_one_per_batch():
    plan = tables.UpkeepPlan(["a", "b", "c"], every=2)  # 6 steps queued every 2 batches
    steps = run_plan(plan, 12)
    assert list(steps) == list(range(2, 13))  # one step after every batch from the first cycle on
    assert len(set(steps.values())) == 6  # the queue never holds a step twice, and all get their turn


def test_a_restarted_job_keeps_the_upkeep_turns_of_its_query():
    """The job killed every 25 batches (a new plan each time, as a new process builds it), on a
    30-batch cycle: the turns follow the batch ids, so the steps run after the same batches as
    without restarts. Counted per process (the plan before the chaos hour 20261207-011537-f198),
    no process ever reached batch 30 and no table was ever compacted."""
    names, every = list(TABLES), 30
    steady = run_plan(tables.UpkeepPlan(names, every), 200)
    restarted, plan = {}, None
    for b in range(1, 201):
        if b % 25 == 1:
            plan = tables.UpkeepPlan(names, every)   # kill -9 and a restart
        if step := plan.after_batch(b - 1):
            restarted[b] = step
    assert restarted == steady and len(steady) >= 5 * len(names) * len(tables.UPKEEP_OPS)
    per_process = {}
    for start in range(1, 201, 25):
        count = tables.UpkeepPlan(names, every)
        per_process.update({start + i: s for i in range(25) if (s := count.after_batch(i))})
    assert per_process == {}   # ids counted from 0 in each process: what the old count did


def test_a_turn_on_a_batch_without_data_runs_after_the_next_batch_with_data():
    plan = tables.UpkeepPlan(["a", "b"], every=8)   # 4 steps, one every 2 batches: batches 8, 10, 12, 14
    assert [plan.due_at(n - 1) for n in (8, 10, 12, 14)] == [("a", "optimize"), ("a", "vacuum"),
                                                             ("b", "optimize"), ("b", "vacuum")]
    ran = {}
    for n in [*range(1, 10), 13, 14, 15]:   # batches 10-12 had no data: Spark ran none for them
        if step := plan.after_batch(n - 1):
            ran[n] = step
    assert ran == {8: ("a", "optimize"), 13: ("a", "vacuum"), 14: ("b", "optimize"), 15: ("b", "vacuum")}
    assert plan.queue == []


def test_upkeep_off():
    assert run_plan(tables.UpkeepPlan(list(TABLES), every=0), 100) == {}
    assert tables.UpkeepPlan(list(TABLES), every=0).batches_to_first_cycle() == 0


@pytest.mark.parametrize(("names", "every"), [(list(TABLES), 30), (list(TABLES), 7), (["a", "b", "c"], 2), (["a"], 1)])
def test_the_first_whole_upkeep_cycle_ends_when_the_plan_says(names, every):
    # the batch after which every table has had each of its steps once, found by running the plan
    plan = tables.UpkeepPlan(names, every)
    wanted, seen, last = {(n, op) for n in names for op in tables.UPKEEP_OPS}, set(), None
    for batch, step in run_plan(tables.UpkeepPlan(names, every), 10 * every + 50).items():
        seen.add(step)
        if seen == wanted:
            last = batch
            break
    assert last is not None and plan.batches_to_first_cycle() == last


def test_the_dedupe_watermark_delay_is_half_the_window():
    # Spark keeps a key until the watermark (newest clock - delay) passes clock + delay:
    # two delays. One window of memory needs a delay of half of it.
    for window in (1, 120, 600):
        assert 2 * transforms.watermark_delay_seconds(window) == pytest.approx(window)


@pytest.mark.parametrize(("once", "service"), [(False, True), (True, False)])
def test_the_running_job_is_a_service_and_a_catch_up_once_is_not(monkeypatch, tmp_path, once, service):
    """The running job reserves and touches its whole heap at start (a service of hours); a
    `job --once` does not pay for that on every start."""
    import pipeline.job.runner as runner
    import pipeline.job.spark as spark_mod

    seen = {}

    class Built(Exception):
        pass

    def fake_build_spark(settings, *args, **kwargs):
        seen.update(kwargs)
        raise Built

    monkeypatch.setattr(runner, "check_source", lambda settings: None)
    monkeypatch.setattr(spark_mod, "build_spark", fake_build_spark)
    with pytest.raises(Built):
        runner.run_job(make_settings(tmp_path), once=once)
    assert seen == {"service": service, "part": "job"}
