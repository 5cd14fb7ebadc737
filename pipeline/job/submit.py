"""Entry script of the job under ``spark-submit`` (a real Spark cluster).

spark-submit starts the driver JVM itself, so the jars and the ``pipeline`` package come
from its command line, and its ``--master`` wins over ``TORMENTA_SPARK_MASTER``. This
script runs ``python -m pipeline`` commands inside spark-submit's driver, and
``python -m pipeline spark-submit-args`` prints those arguments for this checkout::

    python -m pipeline spark-submit-args     # --jars ... --py-files data/spark-pyfiles/pipeline.zip ...
    spark-submit --master spark://spark-master:7077 --deploy-mode client \\
        $(python -m pipeline spark-submit-args) pipeline/job/submit.py job

Everything after the script path is the usual command line (``job``, ``job --once``,
``sql "..."``); settings come from the ``TORMENTA_*`` variables as always.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _package_on_path() -> None:
    """spark-submit puts this script's folder first on sys.path: its modules (cli, spark,
    tables) must not shadow top-level names. The package comes from --py-files (or from
    the checkout, when this file is run as a plain script)."""
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p != here]
    if not any(p.endswith("pipeline.zip") for p in sys.path):
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str] | None = None) -> int:
    from pipeline.cli import main as cli_main

    return cli_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    _package_on_path()
    raise SystemExit(main())
