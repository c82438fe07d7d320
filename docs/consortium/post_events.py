"""Post N signed custody events to a running fourflow API (POST /v1/events), as a
logistics firm's gateway would, and print their ids.

  FOURFLOW_GATEWAY_KEY=0x... .venv/bin/python docs/consortium/post_events.py N [--api URL]

The key must hold SUBMITTER_ROLE. The EIP-712 domain (chain id, registry) comes from
the API's /v1/health. Run it with the fourflow venv (it uses fourflow's own models).
"""
import argparse
import os
import sys
import uuid
from datetime import datetime, timezone

import httpx
from eth_account import Account

from ledger.models import EventBody
from ledger.signing import domain_for, sign_submission

ap = argparse.ArgumentParser()
ap.add_argument("n", type=int)
ap.add_argument("--api", default=os.environ.get("FOURFLOW_API", "http://127.0.0.1:8000"))
ap.add_argument("--stream", default="acme.custody")
a = ap.parse_args()

firm = Account.from_key(os.environ["FOURFLOW_GATEWAY_KEY"])
chain = httpx.get(f"{a.api}/v1/health", timeout=30).json()["chain"]
domain = domain_for(chain_id=int(chain["chain_id"]), contract=chain["registry"])
prefix = uuid.uuid4().hex[:8]
now = datetime.now(timezone.utc)
events = [
    EventBody(kind="epcis.ObjectEvent", schema_version=1, stream=a.stream,
              event_id=f"{prefix}-{i}", asset_ids=["urn:epc:id:sgtin:0614141.107346.2018"],
              event_time=now.isoformat(timespec="milliseconds"),
              payload={"action": "OBSERVE", "bizStep": "urn:epcglobal:cbv:bizstep:shipping",
                       "seq": i},
              submitter=firm.address)
    for i in range(a.n)
]
body = sign_submission(events, private_key=firm.key, domain=domain)
answer = httpx.post(f"{a.api}/v1/events", json=body.model_dump(mode="json"), timeout=30)
if answer.status_code != 202:
    sys.exit(f"refused: {answer.status_code} {answer.text[:500]}")
print(" ".join(f"{r['event_id']}:{r['status']}" for r in answer.json()["receipts"]))
