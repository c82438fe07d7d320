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


class StreamHealth(BaseModel):
    last_sealed_seq: int | None
    last_anchored_seq: int | None
    batches: dict[str, int] = Field(description="by state: sealed, sent, anchored")


class LatencyHealth(BaseModel):
    p50_s: float | None
    p99_s: float | None


class AnchoringHealth(BaseModel):
    window_batches: int = Field(
        description="how many of the most recently anchored batches (all streams) the "
        "latencies cover"
    )
    received_to_anchored: LatencyHealth = Field(
        description="from the arrival of a batch's oldest event to its anchoring"
    )
    sealed_to_anchored: LatencyHealth


class IndexerHealth(BaseModel):
    indexed_to: int | None = Field(description="the last block indexed; null before the first")
    head: int | None
    lag_blocks: int | None


class WorkerHealth(BaseModel):
    worker_id: str
    kind: str
    host: str
    pid: int
    started_at_ms: int
    heartbeat_age_s: float
    passes: int = Field(description="passes in the current run")
    errors: int = Field(description="failed passes in the current run")
    last_error: str | None
    last_error_age_s: float | None


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    chain: dict[str, Any]
    store: dict[str, Any]
    backlog: dict[str, StreamBacklog]
    streams: dict[str, StreamHealth] = Field(default_factory=dict)
    anchoring: AnchoringHealth | None = None
    indexer: IndexerHealth | None = None
    workers: list[WorkerHealth] = Field(default_factory=list)
