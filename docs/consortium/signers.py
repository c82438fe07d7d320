"""Print, for each block, its hash on every node and the Clique signer that sealed it.

.venv/bin/python signers.py [FIRST] [LAST]   (nodes from $RPCS, default 8611..8613)
"""
import os, sys
import rlp
from eth_keys import keys
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware

urls = os.environ.get("RPCS", "http://127.0.0.1:8611,http://127.0.0.1:8612,http://127.0.0.1:8613").split(",")
ws = [Web3(Web3.HTTPProvider(u)) for u in urls]
for w in ws:  # Clique/QBFT extraData is longer than 32 bytes: web3.py refuses it without this
    w.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)

def signer(b):
    extra = bytes(b["proofOfAuthorityData"])
    fields = [b["parentHash"], b["sha3Uncles"], bytes.fromhex(b["miner"][2:]), b["stateRoot"],
              b["transactionsRoot"], b["receiptsRoot"], b["logsBloom"], b["difficulty"],
              b["number"], b["gasLimit"], b["gasUsed"], b["timestamp"], extra[:-65],
              b["mixHash"], bytes(b["nonce"])]
    if "baseFeePerGas" in b:
        fields.append(b["baseFeePerGas"])
    sig = extra[-65:]
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    pub = keys.Signature(sig[:64] + bytes([v])).recover_public_key_from_msg_hash(keccak(rlp.encode(fields)))
    return pub.to_checksum_address()

heads = [w.eth.block_number for w in ws]
first = int(sys.argv[1]) if len(sys.argv) > 1 else 1
last = int(sys.argv[2]) if len(sys.argv) > 2 else min(heads)
print("heads:", heads)
count = {}
for n in range(first, last + 1):
    blocks = [w.eth.get_block(n) for w in ws]
    hashes = {bytes(b["hash"]).hex()[:10] for b in blocks}
    s = signer(blocks[0])
    count[s] = count.get(s, 0) + 1
    print(n, "same on all nodes" if len(hashes) == 1 else f"DIFFERENT {hashes}",
          "signer", s, "diff", blocks[0]["difficulty"], "txs", len(blocks[0]["transactions"]))
print("blocks per signer:", count)
