"""Sealed and anchored batches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.auth import CallerDep
from api.deps import AccessDep, RuntimeDep
from api.schemas import BatchPublic, ErrorBody
from ledger.canonical import stream_id

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.get(
    "/{stream}/{seq}",
    response_model=BatchPublic,
    responses={
        401: {"model": ErrorBody, "description": "no or bad sign-in token"},
        404: {"model": ErrorBody},
    },
    summary="One batch: its root, leaf count, anchor and events",
)
def get_batch(
    runtime: RuntimeDep,
    caller: CallerDep,
    access: AccessDep,
    stream: Annotated[
        str, Path(pattern=r"^[a-z0-9][a-z0-9._:-]{0,63}$", examples=["acme-logistics.custody"])
    ],
    seq: Annotated[int, Path(ge=0, examples=[0])],
) -> BatchPublic:
    """What the chain shows of a batch (root, leaf count, time range, transaction), for
    any signed-in caller; its event ids only as far as the caller may see them: all for
    an auditor, the caller's own submissions for anyone else."""
    row = runtime.store.batch(stream, seq)
    mine = None if access.sees_everything(caller) else caller.address
    return BatchPublic(
        stream=row.stream,
        stream_id="0x" + stream_id(row.stream).hex(),
        seq=row.seq,
        root="0x" + row.root,
        leaf_count=row.leaf_count,
        first_event_time_ms=row.first_event_time_ms,
        last_event_time_ms=row.last_event_time_ms,
        state=row.state,
        tx_hash=None if row.tx_hash is None else "0x" + row.tx_hash,
        block_number=row.block_number,
        gas_used=row.gas_used,
        chain_id=runtime.deployment.chain_id,
        contract=runtime.deployment.anchor_registry,
        event_ids=runtime.store.batch_event_ids(stream, seq, submitter=mine),
    )
