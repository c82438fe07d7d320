// fourflow proof-bundle verifier, for the browser. A plain ES module: no build step, no
// dependencies. Specification: docs/proof-format.md; the reference is ledger/verify.py,
// whose step numbers and names are used here.
//
// It trusts nothing from fourflow's server: only the bundle itself, sha256 (WebCrypto)
// and the chain node it is given (JSON-RPC over fetch: eth_chainId and eth_call).
//
//   1 bundle format     checked: exact key sets, hex shapes, integers, stream name, times.
//                       Not checked: EIP-55 checksum case of addresses (that needs keccak,
//                       which WebCrypto does not have).
//   2 chain and domain  checked: the node's chain id, envelope.domain.chainId and
//                       verifyingContract equal anchor.chain_id and anchor.contract.
//   3 signature         NOT checked: recovering a secp256k1 signer needs keccak and
//                       elliptic-curve code that a dependency-free browser module lacks.
//   4 leaf              checked: sha256(sha256("fourflow/leaf/v1" || JCS(envelope))).
//   5 on-chain anchor   checked: batchOf(streamId, seq) read from contract storage; its
//                       leaf count, root and event-time range must equal the bundle's
//                       (root and times are extra checks that the spec permits).
//   6 proof shape       checked: path length and sides fixed by (leaf_index, on-chain count).
//   7 root              checked: the recomputed leaf, walked up the path, gives the
//                       on-chain root.
//   8 submitter role    NOT checked: it asks whose key signed (step 3).
//
// Steps 3 and 8 are reported as not checked; `fourflow verify BUNDLE --rpc URL` runs all 8.
//
// WebCrypto exists only in secure contexts: the page must be served over https, or from
// localhost / 127.0.0.1.

export const STEPS = [
  "bundle format",
  "chain and domain",
  "signature",
  "leaf",
  "on-chain anchor",
  "proof shape",
  "root",
  "submitter role",
];

// batchOf(bytes32,uint64): the first 4 bytes of keccak256 of that signature
// (docs/proof-format.md §5; a test recomputes it with keccak).
export const BATCH_OF_SELECTOR = "0x6f74911f";

const LEAF_TAG = "fourflow/leaf/v1";
const RPC_TIMEOUT_MS = 30_000;
const NOT_IN_BROWSER = "not checked in the browser: run fourflow verify";

const HEX32 = /^0x[0-9a-f]{64}$/;
const SIBLING = /^[0-9a-f]{64}$/;
const SIGNATURE = /^0x[0-9a-f]{130}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const STREAM = /^[a-z0-9][a-z0-9._:-]{0,63}$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// The check of the current step does not hold; the message says why.
export class StepFailed extends Error {}

export function fail(message) {
  throw new StepFailed(message);
}

// ---------------------------------------------------------------------------------------
// bytes, hex and sha256

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const utf8 = (text) => new TextEncoder().encode(text);

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex) {
  const digits = hex.startsWith("0x") ? hex.slice(2) : hex;
  if (digits.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(digits)) {
    throw new TypeError(`not hex: ${hex}`);
  }
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// ---------------------------------------------------------------------------------------
// RFC 8785 (JCS) canonical JSON

export function canonicalize(value) {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      return canonicalNumber(value);
    case "string":
      return canonicalString(value);
    case "object":
      return Array.isArray(value) ? canonicalArray(value) : canonicalObject(value);
    default:
      throw new TypeError(`JCS cannot represent a ${typeof value}`);
  }
}

function canonicalNumber(n) {
  if (!Number.isFinite(n)) throw new TypeError(`JCS cannot represent ${n}`);
  return JSON.stringify(n); // ECMAScript Number-to-String, which JCS adopts; -0 gives "0"
}

function canonicalString(s) {
  if (LONE_SURROGATE.test(s)) throw new TypeError("JCS cannot represent a lone surrogate");
  return JSON.stringify(s); // escapes exactly ", \, and U+0000..U+001F, as JCS does
}

function canonicalArray(items) {
  return `[${items.map(canonicalize).join(",")}]`;
}

function canonicalObject(object) {
  const keys = Object.keys(object).sort(); // default sort: by UTF-16 code units, as JCS says
  return `{${keys.map((k) => `${canonicalString(k)}:${canonicalize(object[k])}`).join(",")}}`;
}

// ---------------------------------------------------------------------------------------
// leaves and Merkle proofs (docs/proof-format.md §2, §3)

export async function leafOf(envelope) {
  return sha256(await sha256(concat(utf8(LEAF_TAG), utf8(canonicalize(envelope)))));
}

// The sides of the siblings on the path of leaf `index` in a tree of `count` leaves; the
// last node of an odd level is promoted unchanged and has no sibling at that level.
export function expectedSides(index, count) {
  const sides = [];
  for (let width = count; width > 1; width = Math.ceil(width / 2)) {
    if (index % 2 === 1) sides.push("left");
    else if (index + 1 < width) sides.push("right");
    index = Math.floor(index / 2);
  }
  return sides;
}

// Walks `proof` up from the leaf; its shape is checked separately (step 6).
export async function rootFromProof(leafBytes, proof) {
  let node = leafBytes;
  for (const step of proof) {
    node = "left" in step
      ? await sha256(concat(fromHex(step.left), node))
      : await sha256(concat(node, fromHex(step.right)));
  }
  return node;
}

// ---------------------------------------------------------------------------------------
// JSON-RPC and the anchor registry (docs/proof-format.md §5)

let rpcId = 0;

export async function rpc(url, method, params) {
  let reply;
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
      signal: AbortSignal.timeout(RPC_TIMEOUT_MS),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    reply = await response.json();
  } catch (error) {
    fail(`cannot reach the node at ${url} (${method}): ${error.message}`);
  }
  if (!isObject(reply)) fail(`${method}: the node's reply is not a JSON-RPC response`);
  if (reply.error) fail(`${method} failed: ${JSON.stringify(reply.error)}`);
  return reply.result;
}

const uint64Word = (n) => BigInt(n).toString(16).padStart(64, "0");

// batchOf(bytes32 streamId, uint64 seq), read at the latest block (0 confirmations), returns
// (bytes32 root, uint64 leafCount, uint64 firstEventTime, uint64 lastEventTime,
// uint64 anchoredBlock): five 32-byte words, all zero if the batch is not anchored.
async function batchOf(url, contract, streamId, seq) {
  const data = BATCH_OF_SELECTOR + toHex(streamId) + uint64Word(seq);
  const result = await rpc(url, "eth_call", [{ to: contract, data }, "latest"]);
  if (typeof result !== "string" || !/^0x[0-9a-fA-F]{320}$/.test(result)) {
    fail(`batchOf at ${contract} returned ${result}, not five 32-byte words`);
  }
  const words = Array.from({ length: 5 }, (_, i) => result.slice(2 + 64 * i, 66 + 64 * i));
  const uint = (hex) => BigInt("0x" + hex);
  return {
    root: "0x" + words[0].toLowerCase(),
    leafCount: uint(words[1]),
    firstEventTime: uint(words[2]),
    lastEventTime: uint(words[3]),
    anchoredBlock: uint(words[4]),
  };
}

// ---------------------------------------------------------------------------------------
// step 1: the shape of docs/proof-format.md §1

function exactObject(value, where, keys) {
  if (!isObject(value)) fail(`${where} is not a JSON object`);
  const missing = keys.filter((k) => !Object.hasOwn(value, k));
  const extra = Object.keys(value).filter((k) => !keys.includes(k));
  if (missing.length || extra.length) {
    fail(`${where}: missing keys [${missing}], unexpected keys [${extra}]`);
  }
  return value;
}

function matches(value, pattern, where, what) {
  if (typeof value !== "string" || !pattern.test(value)) fail(`${where}: expected ${what}`);
}

function integer(value, where, minimum = 0) {
  // JSON.parse reads 1.0 as 1, so "1.0" in the bundle's text passes here.
  if (!Number.isSafeInteger(value) || value < minimum) {
    fail(`${where}: expected an integer >= ${minimum}, got ${JSON.stringify(value)}`);
  }
}

function proofShape(proof, where) {
  if (!Array.isArray(proof)) fail(`${where}: expected a list`);
  proof.forEach((step, i) => {
    const keys = step && typeof step === "object" ? Object.keys(step) : [];
    if (keys.length !== 1 || !["left", "right"].includes(keys[0])) {
      fail(`${where}[${i}]: expected {"left": hex} or {"right": hex}`);
    }
    matches(step[keys[0]], SIBLING, `${where}[${i}]`, "64 lowercase hex digits");
  });
}

function checkEvent(event) {
  const w = "envelope.event";
  exactObject(event, w, [
    "kind", "schema_version", "stream", "event_id", "asset_ids", "event_time", "payload",
    "submitter",
  ]);
  for (const key of ["kind", "event_id"]) {
    if (typeof event[key] !== "string") fail(`${w}.${key}: expected a string`);
  }
  integer(event.schema_version, `${w}.schema_version`, 1);
  matches(event.stream, STREAM, `${w}.stream`, "a stream name");
  const ids = event.asset_ids;
  if (!Array.isArray(ids) || ids.length === 0 || !ids.every((a) => typeof a === "string")) {
    fail(`${w}.asset_ids: expected a non-empty list of strings`);
  }
  if (new Set(ids).size !== ids.length) fail(`${w}.asset_ids: expected distinct strings`);
  matches(event.event_time, RFC3339, `${w}.event_time`, "RFC 3339 with an offset");
  if (!isObject(event.payload)) fail(`${w}.payload is not a JSON object`);
  matches(event.submitter, ADDRESS, `${w}.submitter`, "a 20-byte hex address");
}

function checkEnvelope(envelope) {
  exactObject(envelope, "envelope", ["event", "submission", "domain"]);
  checkEvent(envelope.event);
  const s = exactObject(envelope.submission, "envelope.submission", [
    "root", "count", "index", "proof", "signature",
  ]);
  matches(s.root, HEX32, "envelope.submission.root", "0x + 64 lowercase hex digits");
  integer(s.count, "envelope.submission.count", 1);
  integer(s.index, "envelope.submission.index");
  proofShape(s.proof, "envelope.submission.proof");
  matches(s.signature, SIGNATURE, "envelope.submission.signature", "0x + 130 lowercase hex");
  const d = exactObject(envelope.domain, "envelope.domain", [
    "name", "version", "chainId", "verifyingContract",
  ]);
  if (typeof d.name !== "string" || typeof d.version !== "string") {
    fail("envelope.domain: name and version must be strings");
  }
  integer(d.chainId, "envelope.domain.chainId");
  matches(d.verifyingContract, ADDRESS, "envelope.domain.verifyingContract", "an address");
}

function checkFormat(bundle) {
  exactObject(bundle, "bundle", ["format", "version", "envelope", "leaf", "batch", "anchor"]);
  if (bundle.format !== "fourflow/proof-bundle") {
    fail(`format is ${JSON.stringify(bundle.format)}, expected "fourflow/proof-bundle"`);
  }
  if (bundle.version !== 1) fail(`version is ${JSON.stringify(bundle.version)}, expected 1`);
  checkEnvelope(bundle.envelope);
  matches(bundle.leaf, HEX32, "leaf", "0x + 64 lowercase hex digits");
  const b = exactObject(bundle.batch, "batch", [
    "stream", "stream_id", "seq", "leaf_index", "leaf_count", "root", "proof",
    "first_event_time", "last_event_time",
  ]);
  matches(b.stream, STREAM, "batch.stream", "a stream name");
  for (const key of ["stream_id", "root"]) matches(b[key], HEX32, `batch.${key}`, "hex32");
  integer(b.seq, "batch.seq");
  integer(b.leaf_index, "batch.leaf_index");
  integer(b.leaf_count, "batch.leaf_count", 1);
  proofShape(b.proof, "batch.proof");
  integer(b.first_event_time, "batch.first_event_time");
  integer(b.last_event_time, "batch.last_event_time");
  const a = exactObject(bundle.anchor, "anchor", [
    "chain_id", "contract", "tx_hash", "block_number",
  ]);
  integer(a.chain_id, "anchor.chain_id");
  matches(a.contract, ADDRESS, "anchor.contract", "a 20-byte hex address");
  matches(a.tx_hash, HEX32, "anchor.tx_hash", "0x + 64 lowercase hex digits");
  integer(a.block_number, "anchor.block_number");
}

// ---------------------------------------------------------------------------------------
// steps 2 to 7

async function checkChainAndDomain(bundle, rpcUrl) {
  const { anchor } = bundle;
  const domain = bundle.envelope.domain;
  const reply = await rpc(rpcUrl, "eth_chainId", []);
  if (typeof reply !== "string" || !/^0x[0-9a-fA-F]+$/.test(reply)) {
    fail(`eth_chainId returned ${JSON.stringify(reply)}, not a hex quantity`);
  }
  const nodeChain = Number(BigInt(reply));
  if (nodeChain !== anchor.chain_id) {
    fail(`expected chain ${anchor.chain_id}, the node is chain ${nodeChain}`);
  }
  if (domain.chainId !== anchor.chain_id || domain.verifyingContract !== anchor.contract) {
    fail(
      `signature domain is chain ${domain.chainId} / ${domain.verifyingContract}, ` +
        `expected chain ${anchor.chain_id} / ${anchor.contract}`,
    );
  }
  return `chain ${nodeChain}, registry ${anchor.contract}`;
}

async function checkLeaf(bundle) {
  let leaf;
  try {
    leaf = await leafOf(bundle.envelope);
  } catch (error) {
    fail(`the envelope has no canonical JSON: ${error.message}`);
  }
  const hex = "0x" + toHex(leaf);
  if (hex !== bundle.leaf) fail(`envelope hashes to leaf ${hex}, bundle says ${bundle.leaf}`);
  return leaf;
}

async function checkAnchor(bundle, rpcUrl) {
  const { batch, anchor } = bundle;
  const streamId = await sha256(utf8(batch.stream));
  if ("0x" + toHex(streamId) !== batch.stream_id) {
    fail(`stream_id ${batch.stream_id} is not sha256 of "${batch.stream}"`);
  }
  const stored = await batchOf(rpcUrl, anchor.contract, streamId, batch.seq);
  if (stored.leafCount === 0n) fail(`batch ${batch.seq} of "${batch.stream}" is not anchored`);
  const compare = [
    ["leaf count", stored.leafCount, BigInt(batch.leaf_count)],
    ["root", stored.root, batch.root],
    ["first event time", stored.firstEventTime, BigInt(batch.first_event_time)],
    ["last event time", stored.lastEventTime, BigInt(batch.last_event_time)],
  ];
  for (const [what, chain, claimed] of compare) {
    if (chain !== claimed) fail(`the chain says ${what} ${chain}, the bundle ${claimed}`);
  }
  return stored; // its leaf count equals the bundle's, a safe integer
}

function checkProofShape(batch, leafCount) {
  if (batch.leaf_index >= leafCount) {
    fail(`leaf index ${batch.leaf_index} outside a tree of ${leafCount} leaves`);
  }
  const want = expectedSides(batch.leaf_index, leafCount);
  const got = batch.proof.map((step) => Object.keys(step)[0]);
  if (got.join() !== want.join()) {
    fail(`expected sibling sides [${want}], got [${got}]`);
  }
  if (!batch.proof.every((step) => SIBLING.test(Object.values(step)[0]))) {
    fail("every sibling must be 64 lowercase hex digits (32 bytes)");
  }
  return `${want.length} siblings`;
}

async function checkRoot(leaf, proof, onChainRoot) {
  const computed = "0x" + toHex(await rootFromProof(leaf, proof));
  if (computed !== onChainRoot) {
    fail(`path leads to ${computed}, the chain holds ${onChainRoot}`);
  }
  return `root ${computed}`;
}

// ---------------------------------------------------------------------------------------
// the verifier

export async function verifyBundle(bundle, rpcUrl, onStep = () => {}) {
  const steps = [];
  const pass = (n, detail) => {
    const step = { n, name: STEPS[n - 1], detail };
    steps.push(step);
    onStep(step);
  };
  let n = 1;
  try {
    if (!globalThis.crypto?.subtle) {
      fail("WebCrypto is unavailable: serve the page over https or from localhost");
    }
    checkFormat(bundle);
    pass(1, `${bundle.format} v${bundle.version}`);

    n = 2;
    pass(2, await checkChainAndDomain(bundle, rpcUrl));

    pass(3, NOT_IN_BROWSER);

    n = 4;
    const leaf = await checkLeaf(bundle);
    pass(4, `leaf 0x${toHex(leaf)}`);

    n = 5;
    const stored = await checkAnchor(bundle, rpcUrl);
    const { stream, seq } = bundle.batch;
    const { anchoredBlock, leafCount } = stored;
    pass(5, `${stream}/${seq} anchored in block ${anchoredBlock}, ${leafCount} leaves`);

    n = 6;
    pass(6, checkProofShape(bundle.batch, Number(stored.leafCount)));

    n = 7;
    pass(7, await checkRoot(leaf, bundle.batch.proof, stored.root));

    pass(8, NOT_IN_BROWSER);
    return { ok: true, steps };
  } catch (error) {
    const message = error instanceof StepFailed ? error.message : `internal error: ${error}`;
    return { ok: false, step: n, name: STEPS[n - 1], message, steps };
  }
}
