"""The lender dashboard: one HTML page at `/`, its scripts and styles under `/static/`,
and `GET /v1/chain`, the public facts a browser needs to verify proofs by itself.

The page is plain ES modules (api/static; no build step, nothing from a CDN). It calls
the same /v1 API as every other client, with a bearer token from Sign-In with Ethereum,
and checks proofs against a JSON-RPC node of the user's choice (docs/dashboard.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from ledger.chain import Deployment
from ledger.chainlog import watched_contracts

STATIC = Path(__file__).resolve().parent.parent / "static"

# The page's Content-Security-Policy. Everything it runs and shows comes from us:
# - script-src 'self': no inline script, no eval, no CDN, so data that reached the DOM can
#   never run even if an escape were missed (the page uses textContent, never innerHTML).
# - style-src 'self': no inline styles; the scripts set SVG attributes and classes only.
# - connect-src 'self' http: https: — 'self' is the API. The verify action asks a JSON-RPC
#   node chosen by the user (the deployment's rpc_url by default, or the lender's own
#   node, typed into the settings): any origin, so no narrower list can be written here.
#   http: as well as https:, because private chain nodes are often plain http on an
#   internal address. The price is that script could send data anywhere; script-src
#   'self' is what keeps foreign script out, and the page sends a node nothing but
#   public chain queries (eth_chainId, eth_call, eth_getTransactionReceipt, ...).
# - img-src 'self' data:: the page's only image is its empty data: favicon (so that the
#   browser does not ask for a /favicon.ico that does not exist).
# - object-src, base-uri, frame-ancestors 'none'; form-action 'self': no plugins, no
#   <base> hijack, no framing (clickjacking the Acknowledge button), no posting away.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self' http: https:",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _StaticFiles(StaticFiles):
    """api/static with the page's headers on every file: /static/index.html is the page
    too, and must not escape the policy."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        return response


router = APIRouter(tags=["dashboard"])
router.mount("/static", _StaticFiles(directory=STATIC), name="static")


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    """The dashboard's single page; it routes by the URL's #fragment."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)


def chain_facts(deployment: Deployment) -> dict[str, Any]:
    """What a browser needs to check proofs: the chain id, the manifest's JSON-RPC URL (a
    default: the user may prefer its own node) and every fourflow contract's address."""
    return {
        "chain_id": deployment.chain_id,
        "rpc_url": deployment.rpc_url,
        "contracts": watched_contracts(deployment),
    }


@router.get("/v1/chain", summary="The chain and contracts, for verifying proofs")
def chain(request: Request) -> dict[str, Any]:
    """Public: the chain id, the deployment manifest's `rpc_url` (null if it has none) and
    the contract addresses (`AnchorRegistry`, `ReceiptRegistry`, `PriceFeed`,
    `PledgeRegistry`, those that are deployed). A verifier should compare the addresses
    with the manifest it was given rather than trust this answer."""
    return chain_facts(request.app.state.runtime.deployment)
