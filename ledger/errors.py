"""fourflow's errors. Every exception the ledger raises derives from LedgerError.

    LedgerError
    ├── InvalidInput           bad data from outside; maps to HTTP 4xx / CLI exit 2
    │   ├── InvalidSignature   signature does not recover the declared submitter
    │   ├── Unauthenticated    no or unknown credentials where a client must be known
    │   ├── UnregisteredSigner signer lacks the on-chain role it needs
    │   ├── Conflict           same id, different content
    │   ├── InvalidDocument    a document with field-level errors (EPCIS capture)
    │   └── TooLarge           over a size or count limit
    ├── NotFound               no such event / batch
    │   └── NotAnchored        the event exists but its batch is not anchored yet
    ├── Hidden                 unknown, or not the caller's to see: one answer for both
    ├── VerificationFailed     a proof bundle failed a numbered verification step
    ├── ChainError             the chain node failed or refused (web3 errors are translated here)
    │   └── ContractReverted   a transaction or call reverted; carries the custom error
    ├── StoreError             the database failed (SQLAlchemy errors are translated here)
    └── ArtifactError          compiled contract artifacts missing or stale

web3 and SQLAlchemy exceptions never leave the ledger package: they are re-raised
as one of these with the original as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactError",
    "ChainError",
    "Conflict",
    "ContractReverted",
    "Hidden",
    "InvalidDocument",
    "InvalidInput",
    "InvalidSignature",
    "LedgerError",
    "NotAnchored",
    "NotFound",
    "StoreError",
    "TooLarge",
    "Unauthenticated",
    "UnregisteredSigner",
    "VerificationFailed",
]


class LedgerError(Exception):
    """Root of fourflow's errors. ``code`` is stable and machine-readable."""

    code = "ledger_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidInput(LedgerError):
    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, field=field)
        if code is not None:
            self.code = code


class InvalidSignature(InvalidInput):
    code = "invalid_signature"


class Unauthenticated(InvalidInput):
    code = "unauthenticated"


class UnregisteredSigner(InvalidInput):
    code = "unregistered_signer"


class Conflict(InvalidInput):
    code = "conflict"


class InvalidDocument(InvalidInput):
    """A document failed validation; ``errors`` lists every problem found, each
    ``{"pointer": RFC 6901 JSON pointer, "message": ...}``."""

    code = "invalid_document"

    def __init__(self, message: str, *, errors: list[dict[str, str]]) -> None:
        super().__init__(message, field=errors[0]["pointer"] if errors else None)
        self.errors = errors

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "errors": self.errors}


class TooLarge(InvalidInput):
    code = "too_large"


class NotFound(LedgerError):
    code = "not_found"


class NotAnchored(NotFound):
    code = "not_anchored"


class Hidden(LedgerError):
    """The object does not exist or the caller may not see it. Callers who may not see
    everything get this for both, with the same message, so they learn nothing about
    whether it exists."""

    code = "not_found_or_forbidden"


class VerificationFailed(LedgerError):
    """A bundle failed verification at ``step`` (1-based, see ledger.verify.STEPS)."""

    code = "verification_failed"

    def __init__(self, step: int, name: str, message: str) -> None:
        super().__init__(f"step {step} ({name}) failed: {message}")
        self.step = step
        self.name = name
        self.reason = message

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "step": self.step, "step_name": self.name}


class ChainError(LedgerError):
    code = "chain_unavailable"


class ContractReverted(ChainError):
    code = "contract_reverted"

    def __init__(self, message: str, *, error: str, args: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.error = error
        self.error_args = args


class StoreError(LedgerError):
    code = "store_unavailable"


class ArtifactError(LedgerError):
    code = "artifact_error"


def summary_of(exc: LedgerError) -> str:
    """What may be shown outside the logs (a worker's last error in /v1/health): a node's
    or a database's failure by its code only, since its message carries the RPC URL
    (which for a hosted node holds its API key) or the database's host and user; any
    other error with its message."""
    if isinstance(exc, StoreError) or (
        isinstance(exc, ChainError) and not isinstance(exc, ContractReverted)
    ):
        return exc.code
    return f"{exc.code}: {exc.message}"
