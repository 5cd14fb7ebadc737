"""Tables and checkpoints on S3-compatible object storage: moto's S3 server on loopback.

The thin slice: crafted messages -> `job --once` with TORMENTA_STORAGE_URI=s3a://... ->
the dashboard's readers (delta-rs, no JVM) show the rows -> more messages, the job again
from the S3 checkpoint -> the new rows, nothing twice. Plus the refusals: no keys, a dead
endpoint, a missing bucket, each one line within 20 s; the secret key never printed.

moto runs as its own process (`python -m moto.server`): delta-rs holds the GIL in some
calls, which would deadlock against a server thread inside the test process.
"""

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.read.readers import DeltaReader, HighValueQuery, storage_options
from pipeline.settings import Settings
from tests.support.ports import free_port
from tests.support.stack import produce, tx

ROOT = Path(__file__).resolve().parents[2]
ACCESS, SECRET = "tormenta-test", "s3cr3t-" + uuid.uuid4().hex
DAY = (datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server on a free loopback port; yields its URL, stopped at the end."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not come up on {url}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS,
                        aws_secret_access_key=SECRET)


def make_bucket(endpoint: str) -> str:
    name = f"tormenta-{uuid.uuid4().hex[:10]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def s3_env(settings: Settings, endpoint: str, uri: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORMENTA_") and k != "PYSPARK_GATEWAY_PORT"}
    env["TORMENTA_METRICS_PORT"] = "0"  # no metrics endpoint: tests never bind the product's ports
    env.update({"TORMENTA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TORMENTA_TOPIC": settings.topic,
                "TORMENTA_DATA_DIR": str(settings.data_dir), "TORMENTA_STORAGE_URI": uri,
                "TORMENTA_STORAGE_ENDPOINT": endpoint, "TORMENTA_STORAGE_PATH_STYLE": "true",
                "TORMENTA_STORAGE_ACCESS_KEY": ACCESS, "TORMENTA_DRIVER_MEMORY": "1g",
                "TORMENTA_COMPACT_EVERY": "0", "TORMENTA_JOB_CORES": "2", **extra})
    return env


def job(env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "job", "--once", "--query", "high_value"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def keys_in_bucket(endpoint: str, bucket: str) -> list[str]:
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.integration
def test_job_on_s3_then_readers_then_restart_from_the_s3_checkpoint(stack, s3_endpoint, tmp_path):
    bucket = make_bucket(s3_endpoint)
    uri = f"s3a://{bucket}/tormenta"
    secret_file = tmp_path / "secret-key"
    secret_file.write_text(SECRET + "\n")  # a mounted secret, read through the _FILE setting
    env = s3_env(stack, s3_endpoint, uri, TORMENTA_STORAGE_SECRET_KEY_FILE=str(secret_file))
    produce(stack, [tx("big", 25000), tx("dup", 1800), tx("dup", 1800), tx("low", 10), "garbage{"])
    first = job(env)
    assert first.returncode == 0, first.stderr[-3000:]

    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("TORMENTA_")})
    reader = DeltaReader(settings)  # what the pages use
    page = reader.high_value_page(HighValueQuery(*DAY))
    assert sorted(page.rows.transaction_id) == ["big", "dup"] and page.total == 2
    counts, rows = reader.quarantine(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1))
    assert list(counts.reason) == ["value is not JSON"] and list(rows.raw_value) == ["garbage{"]

    # More messages (one a redelivery of "dup"), the job again: it resumes from the S3 checkpoint.
    produce(stack, [tx("dup", 1800), tx("late", 3000), tx("later", 4000)])
    second = job(env)
    assert second.returncode == 0, second.stderr[-3000:]
    reader = DeltaReader(settings)
    page = reader.high_value_page(HighValueQuery(*DAY))
    assert sorted(page.rows.transaction_id) == ["big", "dup", "late", "later"] and page.total == 4
    metrics = reader.batch_metrics(datetime.now(UTC) - timedelta(hours=1))
    assert sorted(metrics.input_rows) == [3, 5]  # the second run read only the new messages

    keys = keys_in_bucket(s3_endpoint, bucket)
    assert "tormenta/delta/high_value/_delta_log/00000000000000000000.json" in keys
    assert {"tormenta/checkpoints/high_value/offsets/0", "tormenta/checkpoints/high_value/offsets/1"} <= set(keys)
    assert not (stack.data_dir / "delta").exists() and not (stack.data_dir / "checkpoints").exists()
    for out in (first, second):
        assert SECRET not in out.stdout + out.stderr


def refused(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = job(env, timeout=60)
    return done, time.monotonic() - started


@pytest.mark.integration
def test_a_location_without_keys_is_refused_in_one_line(stack, s3_endpoint):
    env = s3_env(stack, s3_endpoint, f"s3a://{make_bucket(s3_endpoint)}/t")
    done, took = refused(env)  # an access key but no secret key
    assert done.returncode == 2 and took < 20, done.stderr
    assert done.stderr == ("error: TORMENTA_STORAGE_URI=" + env["TORMENTA_STORAGE_URI"] + " needs credentials: "
                           "set TORMENTA_STORAGE_SECRET_KEY or TORMENTA_STORAGE_SECRET_KEY_FILE\n")


@pytest.mark.integration
def test_a_dead_endpoint_or_a_missing_bucket_is_refused_in_one_line(stack, s3_endpoint):
    dead = f"http://127.0.0.1:{free_port()}"
    env = s3_env(stack, dead, "s3a://tormenta-x/t", TORMENTA_STORAGE_SECRET_KEY=SECRET)
    done, took = refused(env)
    assert done.returncode == 1 and took < 20 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: object storage endpoint {dead} did not answer within 5 s")
    env = s3_env(stack, s3_endpoint, "s3a://no-such-bucket-here/t", TORMENTA_STORAGE_SECRET_KEY=SECRET)
    done, took = refused(env)
    assert done.returncode == 1 and took < 20 and done.stderr.count("\n") == 1, done.stderr
    assert "bucket 'no-such-bucket-here' does not exist at" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_uris_and_delta_rs_options(tmp_path):
    local = Settings.from_env({"TORMENTA_DATA_DIR": str(tmp_path)})
    assert local.table_uri("high_value") == str(tmp_path / "delta" / "high_value")
    assert local.checkpoint_uri("high_value") == str(tmp_path / "checkpoints" / "high_value")
    assert storage_options(local) is None
    s3 = local.replace(storage_uri="s3a://bkt/a/b/", storage_endpoint="http://127.0.0.1:9000",
                       storage_access_key="AK", storage_secret_key="sk-zq81", storage_path_style=True)
    assert s3.table_uri("quarantine") == "s3a://bkt/a/b/delta/quarantine"
    assert s3.checkpoint_uri("high_value") == "s3a://bkt/a/b/checkpoints/high_value"
    assert storage_options(s3) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "sk-zq81", "AWS_ALLOW_HTTP": "true", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}
    assert "sk-zq81" not in repr(s3) and "sk-zq81" not in str(s3.model_dump())
    aws = s3.replace(storage_endpoint="", storage_region="eu-west-3", storage_path_style=False)
    assert storage_options(aws)["AWS_ENDPOINT_URL"] == "https://s3.eu-west-3.amazonaws.com"
    assert storage_options(aws)["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "true"
    with pytest.raises(SettingsError, match="STORAGE_SECRET_KEY_FILE='.*missing' cannot be read"):
        s3.replace(storage_secret_key="", storage_secret_key_file=str(tmp_path / "missing")).storage_keys()
