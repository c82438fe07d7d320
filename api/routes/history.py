"""Four-flow histories for lenders: pledges, their timelines and evidence packages, and
the timeline of one asset. Every read needs a sign-in token (api.auth) and answers
only what the caller is party to (api.access)."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from api.auth import CallerDep
from api.deps import AccessDep
from api.schemas import ErrorBody
from ledger.collateral import Contracts
from ledger.errors import ChainError, InvalidInput
from ledger.evidence import build_package, package_zip
from ledger.history import Histories, HistoryFilter, Subject, freeze_reasons
from ledger.replay import ChainState

router = APIRouter(tags=["history"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no or bad sign-in token"},
    403: {
        "model": ErrorBody,
        "description": "no such object, or not the caller's to see (one answer for both)",
    },
    422: {"model": ErrorBody, "description": "a bad filter, cursor or limit"},
}


def get_histories(request: Request) -> Histories:
    histories: Histories = request.app.state.histories
    return histories


HistoriesDep = Annotated[Histories, Depends(get_histories)]
PledgeId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the pledge's on-chain id")]


def _time_ms(text: str | None, name: str) -> int | None:
    """An RFC 3339 time with an offset, or unix milliseconds."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput(
            f"{name}: expected RFC 3339 with an offset or unix milliseconds, got {text!r}",
            field=name,
            code="invalid_filter",
        )
    return int(parsed.timestamp() * 1000)


def _filter(
    flow: list[str] | None, kind: list[str] | None, since: str | None, until: str | None
) -> HistoryFilter:
    flows = [f for value in flow or [] for f in value.split(",") if f]
    kinds = [k for value in kind or [] for k in value.split(",") if k]
    return HistoryFilter.parse(
        flows=flows,
        kinds=kinds,
        since_ms=_time_ms(since, "since"),
        until_ms=_time_ms(until, "until"),
    )


def _timeline(
    request: Request, histories: Histories, subject: Subject, query: TimelineQuery
) -> dict[str, Any]:
    where, cursor, limit, summary = query.where, query.cursor, query.limit, query.summary
    page = histories.page(subject, where=where, cursor=cursor, limit=limit)
    body: dict[str, Any] = {"subject": subject.to_json()}
    if summary if summary is not None else cursor is None:
        body["summary"] = histories.summary(subject)
    body["entries"] = [entry.to_json() for entry in page.entries]
    body["next_cursor"] = page.next_cursor
    body["links"] = {
        "next": None
        if page.next_cursor is None
        else str(request.url.include_query_params(cursor=page.next_cursor))
    }
    return body


FlowQuery = Annotated[
    list[str] | None,
    Query(description="information, logistics, commercial, capital; repeat or comma-separate"),
]
KindQuery = Annotated[list[str] | None, Query(description="entry kinds, e.g. disbursement")]
SinceQuery = Annotated[str | None, Query(description="RFC 3339 or unix ms, inclusive")]
UntilQuery = Annotated[str | None, Query(description="RFC 3339 or unix ms, exclusive")]
CursorQuery = Annotated[str | None, Query(max_length=2_000, description="next_cursor of a page")]
LimitQuery = Annotated[int, Query(ge=1, le=500)]
SummaryQuery = Annotated[
    bool | None, Query(description="include the summary block (default: on the first page)")
]


# --- pledges ---------------------------------------------------------------------------


def _contracts(request: Request) -> Contracts | None:
    contracts: Contracts | None = request.app.state.contracts
    return contracts


def _pledge_row(pledge_id: int, state: ChainState, contracts: Contracts | None) -> dict[str, Any]:
    pledge = state.pledge(pledge_id)
    assert pledge is not None
    receipt = state.receipts.get(pledge.terms.receipt_id)
    valuation: dict[str, Any] | None = None
    if contracts is not None:
        try:
            v = contracts.pledges.valuation_of(pledge_id)
            valuation = {
                "quantity": v.quantity,
                "price": v.price,
                "goods_value": v.goods_value,
                "value": v.value,
                "ltv_bps": None if v.ltv_bps >= 2**255 else v.ltv_bps,
                "price_observed_at": v.price_observed_at,
            }
        except ChainError:
            valuation = None
    terms = pledge.terms
    return {
        "pledge_id": pledge_id,
        "receipt_id": terms.receipt_id,
        "status": pledge.status.name.lower(),
        "frozen": freeze_reasons(int(pledge.frozen)),
        "margin_call_open": pledge.margin_call_open,
        "lender": terms.lender,
        "borrower": pledge.borrower,
        "payee": terms.payee,
        "custodian": receipt.custodian if receipt else None,
        "asset_class": pledge.asset_class,
        "unit": receipt.unit if receipt else None,
        "booked_quantity": receipt.quantity if receipt else None,
        "currency": terms.currency,
        "principal": terms.principal,
        "disbursed": pledge.disbursed,
        "repaid": pledge.repaid,
        "outstanding": pledge.outstanding,
        "margin": pledge.margin,
        "pledge_rate_bps": terms.pledge_rate_bps,
        "warning_ltv_bps": terms.warning_ltv_bps,
        "liquidation_ltv_bps": terms.liquidation_ltv_bps,
        "min_quantity": terms.min_quantity,
        "maturity": terms.maturity,
        "mode": terms.mode.name.lower(),
        "valuation": valuation,
        "links": {
            "history": f"/v1/pledges/{pledge_id}/history",
            "evidence": f"/v1/pledges/{pledge_id}/evidence",
        },
    }


@router.get("/v1/pledges", responses=_ERRORS, summary="The pledges the caller is party to")
def list_pledges(request: Request, caller: CallerDep, access: AccessDep) -> dict[str, Any]:
    """Status, freezes, money and live valuation (loan-to-value) of every pledge the
    caller may see: all for an auditor; a lender's own; a borrower's; a custodian's."""
    state = access.index.state()
    contracts = _contracts(request)
    ids = access.pledge_ids(caller)
    return {"pledges": [_pledge_row(pledge_id, state, contracts) for pledge_id in ids]}


@router.get("/v1/pledges/{pledge_id}", responses=_ERRORS, summary="One pledge")
def get_pledge(
    request: Request, caller: CallerDep, access: AccessDep, pledge_id: PledgeId
) -> dict[str, Any]:
    access.pledge(caller, pledge_id)
    return _pledge_row(pledge_id, access.index.state(), _contracts(request))


class TimelineQuery:
    """The query parameters of both timelines."""

    def __init__(
        self,
        flow: FlowQuery = None,
        kind: KindQuery = None,
        since: SinceQuery = None,
        until: UntilQuery = None,
        cursor: CursorQuery = None,
        limit: LimitQuery = 100,
        summary: SummaryQuery = None,
    ) -> None:
        self.where = _filter(flow, kind, since, until)
        self.cursor = cursor
        self.limit = limit
        self.summary = summary


TimelineDep = Annotated[TimelineQuery, Depends()]


@router.get(
    "/v1/pledges/{pledge_id}/history",
    responses=_ERRORS,
    summary="A pledge's four-flow history, every entry with its proof",
)
def pledge_history(
    request: Request,
    caller: CallerDep,
    access: AccessDep,
    histories: HistoriesDep,
    pledge_id: PledgeId,
    query: TimelineDep,
) -> dict[str, Any]:
    """One timeline merged from the information, logistics, commercial and capital
    flows of the pledge, its receipt and its goods, sorted by time (ties: off-chain
    evidence first, then event id and flow, or block and log index). Off-chain entries
    carry a Merkle proof bundle (or `pending` until anchored), on-chain ones their chain
    id, contract, block, transaction and log index. The first page carries a summary:
    custody now, count against the covenant minimum, ownership and liens, money, alarms,
    and the operations of the sites among the goods (each closed day's figures as
    series with their units, the verdicts on the borrower's declarations)."""
    subject = access.pledge(caller, pledge_id)
    return _timeline(request, histories, subject, query)


@router.get(
    "/v1/assets/{asset_id:path}/history",
    responses=_ERRORS,
    summary="An asset's four-flow history, every entry with its proof",
)
def asset_history(
    request: Request,
    caller: CallerDep,
    access: AccessDep,
    histories: HistoriesDep,
    asset_id: str,
    query: TimelineDep,
) -> dict[str, Any]:
    """The timeline of one asset (an EPC, an ear tag, a herd or lot, a plant, a solar
    plant or charging station, a dealer, a telemetry asset): its own events, and the
    on-chain records of every receipt that bound its identifier and of those receipts'
    pledges the caller may see. The first page's summary is the pledge history's."""
    subject = access.asset(caller, asset_id)
    return _timeline(request, histories, subject, query)


@router.get(
    "/v1/pledges/{pledge_id}/evidence",
    responses=_ERRORS | {200: {"content": {"application/json": {}, "application/zip": {}}}},
    summary="A self-contained evidence package for one pledge",
)
def pledge_evidence(
    request: Request,
    caller: CallerDep,
    access: AccessDep,
    histories: HistoriesDep,
    pledge_id: PledgeId,
    format: Annotated[Literal["json", "zip"], Query()] = "json",
) -> Response:
    """Every entry of the pledge's history with every proof, the summary, and the
    deployment: verifiable offline plus one JSON-RPC endpoint with `fourflow verify`.
    `format=zip` adds a human-readable HTML report next to the JSON."""
    subject = access.pledge(caller, pledge_id)
    package = build_package(histories, subject)
    name = f"fourflow-pledge-{pledge_id}-evidence"
    if format == "zip":
        buffer = io.BytesIO(package_zip(package))
        return Response(
            buffer.getvalue(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}.zip"'},
        )
    return JSONResponse(package, headers={"Content-Disposition": f'inline; filename="{name}.json"'})
