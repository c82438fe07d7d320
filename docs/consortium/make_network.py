"""Throwaway keys and a Clique genesis for a local network of N signers (default 3).

  .venv/bin/python docs/consortium/make_network.py --out DIR [--signers 3] [--submitters 2]

Writes, under DIR: keys/*.key (hex without 0x, mode 600; signerN.key is what a node
unlocks), keys/submitters.txt (0x-hex submitter keys, one a line, for `fourflow load`),
keys/env.sh (the FOURFLOW_* variables fourflow reads) and genesis.json. Every key is
funded in the genesis alloc. Run it with the fourflow venv (it needs eth-account).
"""
import argparse
import json
import os
import stat
import time
from pathlib import Path

from eth_account import Account

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=os.environ.get("NET_DIR", "."))
ap.add_argument("--signers", type=int, default=3)
ap.add_argument("--submitters", type=int, default=2, help="submitter keys (the first is the gateway)")
ap.add_argument("--chain-id", type=int, default=4242)
ap.add_argument("--period", type=int, default=5, help="Clique block period (s)")
ap.add_argument("--base-fee", type=int, default=10**9, help="genesis base fee (wei)")
a = ap.parse_args()
out = Path(a.out)
keys = out / "keys"
keys.mkdir(parents=True, exist_ok=True)


def private(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def new(name: str):
    acct = Account.create()
    private(keys / f"{name}.key", acct.key.hex().removeprefix("0x"))
    return acct


def hexkey(acct) -> str:
    return "0x" + acct.key.hex().removeprefix("0x")


signers = [new(f"signer{i}") for i in range(1, a.signers + 1)]
role = {r: new(r) for r in ["admin", "oracle", "custodian", "lender", "auditor"]}
submitters = [new(f"submitter{i}") for i in range(1, a.submitters + 1)]

# Clique: 32 bytes of vanity, the signer addresses in ascending order, 65 bytes of seal.
ordered = sorted(signers, key=lambda s: int(s.address, 16))
extra = "0x" + "00" * 32 + "".join(s.address[2:].lower() for s in ordered) + "00" * 65
# London at most: EthereumJS's Clique stops at the Merge, and its genesis parser takes
# shanghaiTime/cancunTime as post-Merge. clique-fixes.mjs adds their opcodes instead.
forks = ["homesteadBlock", "eip150Block", "eip155Block", "eip158Block", "byzantiumBlock",
         "constantinopleBlock", "petersburgBlock", "istanbulBlock", "berlinBlock", "londonBlock"]
everyone = [*signers, *role.values(), *submitters]
genesis = {
    "config": {"chainId": a.chain_id, **{f: 0 for f in forks},
               "clique": {"period": a.period, "epoch": 30000}},
    "nonce": "0x0", "timestamp": hex(int(time.time())), "extraData": extra,
    "gasLimit": hex(30_000_000), "difficulty": "0x1",
    "mixHash": "0x" + "00" * 32, "coinbase": "0x" + "00" * 20,
    "number": "0x0", "gasUsed": "0x0", "parentHash": "0x" + "00" * 32,
    "baseFeePerGas": hex(a.base_fee),
    "alloc": {acct.address: {"balance": hex(10**24)} for acct in everyone},  # 1M ETH each
}
(out / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")

private(keys / "submitters.txt", "".join(hexkey(s) + "\n" for s in submitters))
env = {
    # keys (throwaway: hex in the environment is for test networks only)
    "FOURFLOW_ADMIN_KEY": hexkey(role["admin"]),          # fourflow deploy
    "FOURFLOW_ORACLE_KEY": hexkey(role["oracle"]),        # anchoring (serve / oracle run)
    "FOURFLOW_GATEWAY_KEY": hexkey(submitters[0]),        # signs submitted events
    "FOURFLOW_AUDITOR_KEY": hexkey(role["auditor"]),      # sign-in for reads, load readers
    # who gets which role at deployment
    "FOURFLOW_ORACLE_ADDRESS": role["oracle"].address,
    "FOURFLOW_SUBMITTERS": ",".join(s.address for s in submitters),
    "FOURFLOW_CUSTODIANS": role["custodian"].address,
    "FOURFLOW_LENDERS": role["lender"].address,
    "FOURFLOW_AUDITORS": role["auditor"].address,
}
private(keys / "env.sh", "".join(f"export {k}={v}\n" for k, v in env.items()))

print("signers:", ", ".join(s.address for s in ordered))
for r, acct in role.items():
    print(f"{r}: {acct.address}")
print("submitters:", ", ".join(s.address for s in submitters))
print(f"wrote {out / 'genesis.json'}, {keys}/")
