"""Stand-ins for pure-logic unit tests (the real-stack tests use the real services)."""


class SparkChain:
    """A DataFrame's writer or a session's stream reader, without Spark: every builder call
    returns the chain itself and the options it is given are recorded; ``save(path)`` logs
    the path with those options, ``load()`` returns them."""

    sparkSession = None

    def __init__(self, saved: list | None = None):
        self.given: dict = {}
        self.saved = saved if saved is not None else []

    @property
    def write(self):
        return self

    @property
    def readStream(self):  # noqa: N802 - Spark's name
        return self

    def format(self, _):
        return self

    def mode(self, _):
        return self

    def option(self, k, v):
        self.given[k] = v
        return self

    def options(self, **kw):
        self.given.update(kw)
        return self

    def load(self):
        return self.given

    def save(self, path):
        self.saved.append((path, dict(self.given)))
