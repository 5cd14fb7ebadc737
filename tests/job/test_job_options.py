"""The job's Spark and Kafka-source options that its per-batch cost depends on (pure logic)."""

from pipeline.job import runner
from pipeline.job.spark import LOCAL_DISK_CONF, session_conf
from tests.support.fakes import SparkChain
from tests.support.stack import make_settings


def test_the_checkpoint_writer_without_forks_is_for_a_local_disk_only(tmp_path):
    local = session_conf(make_settings(tmp_path))
    assert all(local[k] == v for k, v in LOCAL_DISK_CONF.items())
    s3 = session_conf(make_settings(tmp_path, storage_uri="s3a://bucket/prefix"))
    assert not set(LOCAL_DISK_CONF) & set(s3)  # object storage keeps Spark's own writer


def test_the_kafka_source_does_not_park_a_fetch_at_the_partition_end(tmp_path):
    opts = runner.kafka_stream(SparkChain(), make_settings(tmp_path))
    assert opts["kafka.fetch.max.wait.ms"] == str(runner.FETCH_MAX_WAIT_MS)
    assert int(opts["kafka.fetch.max.wait.ms"]) <= 50  # Kafka's default of 500 ms idled small batches
    assert opts["subscribe"] and opts["startingOffsets"] == "earliest"


def test_watch_survives_a_query_that_ends_between_its_looks():
    """`_watch` looks at every query, then waits on a running one: a query that ends in between
    (a `--once` query finishing its last batch) is looked at again, not a crash."""
    from pipeline.job.runner import _watch

    class EndsWhileLookedAt:
        name = "high_value"
        looks = 0

        @property
        def isActive(self):  # noqa: N802 - the name StreamingQuery uses
            self.looks += 1
            return self.looks <= 2   # active for the loop's two looks, ended by the wait's

        def exception(self):
            return None

        def awaitTermination(self, timeout):  # noqa: N802
            raise AssertionError("waited on an ended query")

    handle = EndsWhileLookedAt()
    _watch([handle], None)
    assert handle.looks >= 4
