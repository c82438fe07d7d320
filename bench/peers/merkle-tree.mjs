// The @openzeppelin/merkle-tree peer: build a tree over N leaves and serve one proof.
// Reads N from argv, prints {"build_s": …, "proof_s": …} as JSON. Leaves are N
// pseudo-random 32-byte values; OpenZeppelin's SimpleMerkleTree hashes pairs with
// keccak256 (sorted), as Solidity verifiers expect.
import { SimpleMerkleTree } from "@openzeppelin/merkle-tree";
import { randomBytes } from "node:crypto";

const n = Number(process.argv[2]);
const leaves = Array.from({ length: n }, () => "0x" + randomBytes(32).toString("hex"));
let t = process.hrtime.bigint();
const tree = SimpleMerkleTree.of(leaves);
const build_s = Number(process.hrtime.bigint() - t) / 1e9;
t = process.hrtime.bigint();
const proof = tree.getProof(Math.floor(n / 2));
const proof_s = Number(process.hrtime.bigint() - t) / 1e9;
process.stdout.write(JSON.stringify({ build_s, proof_s, siblings: proof.length }) + "\n");
