"""Specific exceptions; the CLI turns each into one clear line and a non-zero exit code."""


class NmdoseError(Exception):
    """Base class: the message is what the user sees, so it names the file/node/UID and what was expected."""

    exit_code = 2


class ConfigError(NmdoseError):
    """A configuration file or value is wrong."""


class SecretError(NmdoseError):
    """A secret could not be resolved (Vault unreachable, variable missing)."""


class StackError(NmdoseError):
    """A local server could not be started or stopped (names the node, port and log file)."""


class DatabaseError(NmdoseError):
    """PostgreSQL is unreachable or a migration failed."""


class PacsError(NmdoseError):
    """A DICOM peer answered with an error."""


class PacsTimeout(PacsError):
    """A DICOM peer did not answer in time."""


class DoseReportError(NmdoseError):
    """A dose object could not be read (names the file and the concept)."""
