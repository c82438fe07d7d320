"""The shapes fourflow signs, stores, anchors and proves. Pure: pydantic only.

    EventBody        what a submitter says happened (unsigned)
    SubmissionIn     a batch of bodies plus one EIP-712 signature over all of them
    SignedEnvelope   one body with the signature and its place in the submission;
                     its canonical JSON is what a Merkle leaf commits to
    ProofBundle      an envelope with everything needed to check it against the chain

Every model validates itself on construction and forbids unknown fields, so a value of
one of these types is well formed by the time any other code sees it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)

from ledger.canonical import canonical_json
from ledger.errors import InvalidInput

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "MAX_PAYLOAD_DEPTH",
    "AnchorRef",
    "BatchRef",
    "Eip712Domain",
    "EventBody",
    "ProofBundle",
    "SignedEnvelope",
    "SubmissionIn",
    "SubmissionRef",
    "event_time_ms",
    "offset_zone",
    "utc_text",
]

BUNDLE_FORMAT: Final = "fourflow/proof-bundle"
BUNDLE_VERSION: Final = 1
MAX_PAYLOAD_DEPTH = 16

# The shapes of the envelope's strings, unanchored (ledger.audit's fast check reuses them)
KIND_PATTERN: Final = r"[A-Za-z][A-Za-z0-9_.:-]{0,63}"
STREAM_PATTERN: Final = r"[a-z0-9][a-z0-9._:-]{0,63}"
IDENTIFIER_PATTERN: Final = r"[!-~]{1,200}"
ADDRESS_PATTERN: Final = r"0x[0-9a-fA-F]{40}"
HEX32_PATTERN: Final = r"0x[0-9a-f]{64}"
SIGNATURE_PATTERN: Final = r"0x[0-9a-f]{130}"
SIBLING_PATTERN: Final = r"[0-9a-f]{64}"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
_CHECKSUM_ADDRESS = re.compile(f"^{ADDRESS_PATTERN}$")

Hex32 = Annotated[str, StringConstraints(pattern=f"^{HEX32_PATTERN}$")]
Signature = Annotated[str, StringConstraints(pattern=f"^{SIGNATURE_PATTERN}$")]
StreamName = Annotated[str, StringConstraints(pattern=f"^{STREAM_PATTERN}$")]
Identifier = Annotated[str, StringConstraints(pattern=f"^{IDENTIFIER_PATTERN}$")]
Kind = Annotated[str, StringConstraints(pattern=f"^{KIND_PATTERN}$")]
_SIBLING = re.compile(f"^{SIBLING_PATTERN}$")


def _proof_steps(value: list[dict[str, str]]) -> list[dict[str, str]]:
    for position, step in enumerate(value):
        if len(step) != 1 or next(iter(step)) not in ("left", "right"):
            raise ValueError(f"proof step {position} must have the single key 'left' or 'right'")
        if not _SIBLING.fullmatch(next(iter(step.values()))):
            raise ValueError(f"proof step {position}: expected 64 lowercase hex digits")
    return value


ProofSteps = Annotated[list[dict[str, str]], AfterValidator(_proof_steps)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _checksum_address(value: str) -> str:
    # EIP-55 without importing eth_utils into a pure module: keccak is needed, so the
    # check itself lives in ledger.signing; here only the shape is checked.
    if not _CHECKSUM_ADDRESS.fullmatch(value):
        raise ValueError("expected a 0x-prefixed 20-byte hex address")
    return value


def _deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels in ``value`` (itself one
    level). Level by level, without recursion: a payload is mostly flat, and this runs
    once per event submitted. Validated JSON values hold plain dicts and lists only."""
    level: list[Any] = [value]
    for _ in range(limit):
        inner = []
        for container in level:
            for item in container.values() if type(container) is dict else container:
                if type(item) is dict or type(item) is list:
                    inner.append(item)
        if not inner:
            return False
        level = inner
    return True


def utc_text(ms: int) -> str:
    """Unix milliseconds as ``YYYY-MM-DDThh:mm:ss.sssZ``."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def offset_zone(offset: str) -> timezone:
    """The fixed time zone of a ``±HH:MM`` UTC offset (already checked by the caller)."""
    sign = 1 if offset[0] == "+" else -1
    return timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))


def event_time_ms(value: str) -> int:
    """Unix milliseconds of an RFC 3339 time with an offset."""
    return int(datetime.fromisoformat(value).timestamp() * 1000)


class EventBody(_Strict):
    """An unsigned event. Its RFC 8785 form is what the submitter signs (via the digest)."""

    kind: Kind = Field(examples=["epcis.ObjectEvent"])
    schema_version: int = Field(ge=1, le=1_000, examples=[1])
    stream: StreamName = Field(examples=["acme-logistics.custody"])
    event_id: Identifier = Field(examples=["6f1c7a2e-8a51-4f4e-9d8c-0f5b2c7e9a10"])
    asset_ids: list[Identifier] = Field(min_length=1, max_length=1_000)
    event_time: str = Field(examples=["2026-11-26T08:15:00.000+08:00"])
    payload: dict[str, JsonValue]
    submitter: str = Field(examples=["0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"])

    @field_validator("event_time")
    @classmethod
    def _time_has_offset(cls, value: str) -> str:
        if not _RFC3339.fullmatch(value):
            raise ValueError("expected RFC 3339 with an offset, e.g. 2026-11-26T08:15:00.000Z")
        try:
            parsed = datetime.fromisoformat(value)
            utc_year = parsed.astimezone(UTC).year
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"not a valid date-time: {exc}") from exc
        if parsed.tzinfo is None or utc_year < 1970:
            raise ValueError("expected a time-zone-aware time after 1970")
        return value

    @field_validator("submitter")
    @classmethod
    def _submitter_shape(cls, value: str) -> str:
        return _checksum_address(value)

    @field_validator("asset_ids")
    @classmethod
    def _assets_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("asset_ids must not repeat")
        return value

    @field_validator("payload")
    @classmethod
    def _payload_canonical(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _deeper_than(value, MAX_PAYLOAD_DEPTH):
            raise ValueError(f"payload nests deeper than {MAX_PAYLOAD_DEPTH} levels")
        try:
            canonical_json(value)  # refuses NaN, unsafe integers, lone surrogates
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc
        return value

    @property
    def event_time_ms(self) -> int:
        return event_time_ms(self.event_time)

    def as_json(self) -> dict[str, Any]:
        """The event as JSON values: what ``model_dump(mode="json")`` gives, at a tenth
        of its cost. A validated body's fields are JSON types already (strict: str, int,
        lists of str, JsonValue), so the dict of its fields is its JSON form. The
        values are the model's own, not copies: read them, do not change them."""
        return dict(self.__dict__)


class SubmissionIn(_Strict):
    """A signed batch: events in order, and one EIP-712 signature over their digests."""

    submitter: str
    signature: Signature
    events: list[EventBody] = Field(min_length=1)

    @field_validator("submitter")
    @classmethod
    def _submitter_shape(cls, value: str) -> str:
        return _checksum_address(value)

    @model_validator(mode="after")
    def _consistent(self) -> SubmissionIn:
        seen: set[str] = set()
        for position, event in enumerate(self.events):
            if event.submitter != self.submitter:
                raise ValueError(
                    f"events[{position}].submitter is {event.submitter}, "
                    f"expected the submission's {self.submitter}"
                )
            if event.event_id in seen:
                raise ValueError(f"events[{position}].event_id {event.event_id!r} repeats")
            seen.add(event.event_id)
        return self


class Eip712Domain(_Strict):
    name: str
    version: str
    chainId: int
    verifyingContract: str


class SubmissionRef(_Strict):
    """Where one event sits in the submission its signature covers."""

    root: Hex32
    count: int = Field(ge=1)
    index: int = Field(ge=0)
    proof: ProofSteps
    signature: Signature


class SignedEnvelope(_Strict):
    event: EventBody
    submission: SubmissionRef
    domain: Eip712Domain


class BatchRef(_Strict):
    stream: StreamName
    stream_id: Hex32
    seq: int = Field(ge=0)
    leaf_index: int = Field(ge=0)
    leaf_count: int = Field(ge=1)
    root: Hex32
    proof: ProofSteps
    first_event_time: int
    last_event_time: int


class AnchorRef(_Strict):
    chain_id: int
    contract: str
    tx_hash: Hex32
    block_number: int = Field(ge=0)


class ProofBundle(_Strict):
    format: Literal["fourflow/proof-bundle"] = BUNDLE_FORMAT
    version: Literal[1] = BUNDLE_VERSION
    envelope: SignedEnvelope
    leaf: Hex32
    batch: BatchRef
    anchor: AnchorRef

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
