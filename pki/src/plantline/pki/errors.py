"""The PKI's exception tree: each error has a stable code and the CLI exit status it maps to.

Exit statuses 0, 1 and 2 belong to `cert needs-renewal` (renew, fine, missing), so every error
exits with 3 or more.
"""

from __future__ import annotations


class PkiError(Exception):
    """Base of every error the PKI raises on purpose; `code` is stable across releases."""

    code = "PKI_ERROR"
    exit_status = 3

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PkiError):
    """A flag, argument or input file is not what was expected; nothing was changed."""

    code = "PKI_INVALID_INPUT"
    exit_status = 3


class NotFound(PkiError):
    """The CA directory, identity, serial or file named does not exist."""

    code = "PKI_NOT_FOUND"
    exit_status = 4


class Conflict(PkiError):
    """The operation would overwrite or duplicate something that exists (see `--force`)."""

    code = "PKI_CONFLICT"
    exit_status = 5


class PassphraseError(PkiError):
    """A key passphrase is missing or wrong."""

    code = "PKI_PASSPHRASE"
    exit_status = 6


class CorruptState(PkiError):
    """The CA directory's state cannot be read or fails its integrity checks."""

    code = "PKI_CORRUPT_STATE"
    exit_status = 7


class Busy(PkiError):
    """Another process holds the CA directory's lock for longer than the wait allowed."""

    code = "PKI_BUSY"
    exit_status = 8


class PolicyViolation(PkiError):
    """The request is well formed but the CA's rules forbid it (profile, path length, phase)."""

    code = "PKI_POLICY"
    exit_status = 9


ALL_ERRORS: tuple[type[PkiError], ...] = (
    PkiError,
    InvalidInput,
    NotFound,
    Conflict,
    PassphraseError,
    CorruptState,
    Busy,
    PolicyViolation,
)
