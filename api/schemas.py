"""Response shapes of the HTTP API. Table rows are never response models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_signature"])
    message: str
    field: str | None = Field(default=None, examples=["events[0].event_time"])
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ReceiptPublic(BaseModel):
    event_id: str
    stream: str
    digest: str = Field(description="hex sha256(sha256(tag || JCS(event body)))")
    leaf: str = Field(description="hex Merkle leaf of the signed envelope")
    status: Literal["accepted", "duplicate"]


class SubmissionAccepted(BaseModel):
    accepted: int
    duplicates: int
    receipts: list[ReceiptPublic]


class BatchLink(BaseModel):
    stream: str
    seq: int
    leaf_index: int
    state: str
    href: str


class EventPublic(BaseModel):
    event_id: str
    stream: str
    kind: str
    submitter: str
    digest: str
    leaf: str
    received_at_ms: int
    status: Literal["pending", "sealed", "sent", "anchored"]
    batch: BatchLink | None
    envelope: dict[str, Any]


class BatchPublic(BaseModel):
    stream: str
    stream_id: str
    seq: int
    root: str
    leaf_count: int
    first_event_time_ms: int
    last_event_time_ms: int
    state: str
    tx_hash: str | None
    block_number: int | None
    gas_used: int | None
    chain_id: int
    contract: str
    event_ids: list[str] = Field(
        description="the first 1,000 events in leaf order: all for an auditor, the "
        "caller's own submissions for anyone else"
    )


class StreamBacklog(BaseModel):
    pending: int
    oldest_age_s: float


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    chain: dict[str, Any]
    store: dict[str, Any]
    backlog: dict[str, StreamBacklog]
