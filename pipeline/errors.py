"""Project exception root.

Every error the product raises on purpose derives from `TormentaError` and carries a
message that says what was wrong and what to do about it. The CLI prints that message
on one line and exits non-zero; the dashboard shows it in a friendly box.
"""

from __future__ import annotations


class TormentaError(Exception):
    """Root of every deliberate Tormenta error."""


class SettingsError(TormentaError):
    """A setting (environment variable or CLI value) was invalid."""


class JavaError(TormentaError):
    """Java is missing or too old for the JVM components."""


class JarsMissingError(TormentaError):
    """The Maven artifacts have not been resolved into the local cache."""


class BrokerError(TormentaError):
    """The embedded broker could not be started, stopped or reached."""


class TopicError(TormentaError):
    """A topic is missing or could not be created/described."""


class EmulatorError(TormentaError):
    """The storm emulator was misconfigured or could not run."""


class JobError(TormentaError):
    """The streaming job could not start or run."""


class DataUnavailable(TormentaError):
    """A Delta table the dashboard wants to read does not exist (yet)."""
