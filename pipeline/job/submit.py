"""Entry script of the job under ``spark-submit`` (a real Spark cluster).

spark-submit starts the driver JVM itself, so the jars and the ``pipeline`` package come
from its command line, and its ``--master`` wins over ``TORMENTA_SPARK_MASTER``. This
script prints those arguments for this checkout, and runs ``python -m pipeline`` commands
inside spark-submit's driver::

    python pipeline/job/submit.py --print-args     # --jars ... --py-files data/spark-pyfiles/pipeline.zip ...
    spark-submit --master spark://spark-master:7077 --deploy-mode client \\
        $(python pipeline/job/submit.py --print-args) pipeline/job/submit.py job

Everything after the script path is the usual command line (``job``, ``job --once``,
``sql "..."``); settings come from the ``TORMENTA_*`` variables as always.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

# spark-submit puts this script's folder first on sys.path; its modules (cli, spark,
# tables) must not shadow top-level names. The package itself comes from --py-files
# (or the checkout, when this file is run as a plain script).
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p != _HERE]
if not any(p.endswith("pipeline.zip") for p in sys.path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def spark_submit_args(settings) -> list[str]:
    """The spark-submit options that ship what the job needs (local paths on this machine)."""
    from pipeline.job.spark import package_zip
    from pipeline.kafka.jvm import spark_extra_jars

    return ["--jars", ",".join(spark_extra_jars(settings.jars_dir, s3=settings.on_object_storage)),
            "--py-files", str(package_zip(settings)),
            "--driver-memory", settings.driver_memory,
            "--conf", f"spark.executor.memory={settings.executor_memory}"]


def print_args() -> int:
    from pipeline.errors import SettingsError, TormentaError
    from pipeline.settings import Settings

    try:
        print(" ".join(shlex.quote(a) for a in spark_submit_args(Settings.from_env())))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TormentaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--print-args"]:
        return print_args()
    from pipeline.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
