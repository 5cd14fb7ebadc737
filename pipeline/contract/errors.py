"""The contract's one exception."""

from pipeline.errors import TormentaError


class Invalid(TormentaError, ValueError):
    """A message that breaks the contract; the text is the quarantine reason."""
