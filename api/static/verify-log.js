// Checks an on-chain history entry (proof type "chain_log") against a JSON-RPC node of
// the user's choice, in the browser: the node, not fourflow's server, says whether the
// log exists. The sibling of verify.js (which checks Merkle proof bundles); the same
// result shape: {ok: true, steps} or {ok: false, step, name, message, steps}.
//
//   1 entry format      the proof's fields have their shapes (hashes, address, hex data)
//   2 chain             the node's eth_chainId is the entry's chain_id
//   3 transaction       eth_getTransactionReceipt(tx_hash) exists and succeeded
//   4 block             the receipt's block number and hash are the entry's, and the node's
//                       block at that height has that hash (not reorganized away)
//   5 log               the receipt has a log at the entry's log_index, not removed
//   6 emitter           that log was emitted by the entry's contract
//   7 topics and data   its topics and data are byte for byte the entry's
//
// Not checked here: that the contract is the genuine fourflow contract (compare its
// address with the deployment manifest you were given), and that the entry's decoded
// summary matches the raw data (decoding needs the contract ABI: `fourflow verify`).

// one JSON-RPC client and one step failure for both verifiers
import { StepFailed, fail, rpc } from "./verify.js";

export const LOG_STEPS = [
  "entry format",
  "chain",
  "transaction",
  "block",
  "log",
  "emitter",
  "topics and data",
];


// a JSON-RPC quantity ("0x1b") as a Number; node answers are checked, not trusted
function quantity(value, what) {
  if (typeof value !== "string" || !/^0x[0-9a-fA-F]+$/.test(value)) {
    fail(`${what}: expected a hex quantity, got ${JSON.stringify(value)}`);
  }
  return Number(BigInt(value));
}

const short = (hex) => (hex.length > 14 ? `${hex.slice(0, 10)}…${hex.slice(-4)}` : hex);
const HASH = /^0x[0-9a-fA-F]{64}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const HEX = /^0x([0-9a-fA-F]{2})*$/;

function checkFormat(proof) {
  const isCount = (n) => Number.isSafeInteger(n) && n >= 0;
  if (proof === null || typeof proof !== "object") fail("the proof is not a JSON object");
  for (const key of ["chain_id", "block_number", "log_index"]) {
    if (!isCount(proof[key])) fail(`${key}: expected an integer`);
  }
  for (const key of ["tx_hash", "block_hash"]) {
    if (!HASH.test(proof[key] ?? "")) fail(`${key}: expected 32 bytes of hex`);
  }
  if (!ADDRESS.test(proof.contract ?? "")) fail("contract: expected a 20-byte address");
  const topics = proof.topics;
  if (!Array.isArray(topics) || topics.length > 4 || !topics.every((t) => HASH.test(t))) {
    fail("topics: expected up to four 32-byte hex words");
  }
  if (typeof proof.data !== "string" || !HEX.test(proof.data)) fail("data: expected hex bytes");
  return `${proof.topics.length} topics, ${(proof.data.length - 2) / 2} bytes of data`;
}

const same = (a, b) =>
  typeof a === "string" && typeof b === "string" && a.toLowerCase() === b.toLowerCase();

async function checkChain(url, proof) {
  const chainId = quantity(await rpc(url, "eth_chainId", []), "eth_chainId");
  if (chainId !== proof.chain_id) {
    fail(`the node is chain ${chainId}, the entry is on chain ${proof.chain_id}`);
  }
  return `chain ${chainId}`;
}

async function fetchReceipt(url, proof) {
  const receipt = await rpc(url, "eth_getTransactionReceipt", [proof.tx_hash]);
  if (!receipt) fail(`the node knows no transaction ${proof.tx_hash}`);
  if (receipt.status !== "0x1") {
    fail(`transaction ${proof.tx_hash} did not succeed (status ${receipt.status})`);
  }
  return receipt;
}

async function checkBlock(url, proof, receipt) {
  const number = quantity(receipt.blockNumber, "the receipt's blockNumber");
  if (number !== proof.block_number) {
    fail(`the transaction is in block ${number}, the entry says ${proof.block_number}`);
  }
  if (!same(receipt.blockHash, proof.block_hash)) {
    fail(
      `the transaction's block hash is ${receipt.blockHash}, the entry says ${proof.block_hash}`,
    );
  }
  const height = "0x" + proof.block_number.toString(16);
  const block = await rpc(url, "eth_getBlockByNumber", [height, false]);
  if (!block || !same(block.hash, proof.block_hash)) {
    fail(`the node's block ${number} is ${block?.hash}, not ${proof.block_hash}: reorganized?`);
  }
  const head = quantity(await rpc(url, "eth_blockNumber", []), "eth_blockNumber");
  return `block ${number} (${short(block.hash)}), ${head - number} blocks deep`;
}

function findLog(receipt, proof) {
  const logs = Array.isArray(receipt.logs) ? receipt.logs : [];
  const log = logs.find((l) => quantity(l.logIndex, "a log's logIndex") === proof.log_index);
  if (!log) fail(`the transaction has no log at index ${proof.log_index}`);
  if (log.removed) fail(`the node reports log ${proof.log_index} removed (reorganized away)`);
  return log;
}

function checkEmitter(log, proof) {
  if (!same(log.address, proof.contract)) {
    fail(`the log was emitted by ${log.address}, the entry says ${proof.contract}`);
  }
  const name = proof.contract_name ? ` (${proof.contract_name}, per this deployment)` : "";
  return `emitted by ${proof.contract}${name}`;
}

function checkTopicsAndData(log, proof) {
  const topics = Array.isArray(log.topics) ? log.topics : [];
  const want = Array.isArray(proof.topics) ? proof.topics : [];
  if (topics.length !== want.length) {
    fail(`the log has ${topics.length} topics, the entry ${want.length}`);
  }
  topics.forEach((topic, i) => {
    if (!same(topic, want[i])) fail(`topic ${i} is ${topic} on chain, ${want[i]} in the entry`);
  });
  if (!same(log.data, proof.data)) fail("the log's data differ from the entry's");
  const bytes = (proof.data.length - 2) / 2;
  return `${topics.length} topics and ${bytes} bytes of data as in the entry`;
}

export async function verifyChainLog(proof, rpcUrl, onStep = () => {}) {
  const steps = [];
  let n = 1;
  const pass = (detail) => {
    const step = { n, name: LOG_STEPS[n - 1], detail };
    steps.push(step);
    onStep(step);
    n += 1;
  };
  try {
    pass(checkFormat(proof));
    pass(await checkChain(rpcUrl, proof));
    const receipt = await fetchReceipt(rpcUrl, proof);
    pass(`transaction ${short(proof.tx_hash)} succeeded`);
    pass(await checkBlock(rpcUrl, proof, receipt));
    const log = findLog(receipt, proof);
    pass(`log ${proof.log_index} of block ${proof.block_number}`);
    pass(checkEmitter(log, proof));
    pass(checkTopicsAndData(log, proof));
    return { ok: true, steps };
  } catch (error) {
    const message = error instanceof StepFailed ? error.message : `internal error: ${error}`;
    return { ok: false, step: n, name: LOG_STEPS[n - 1], message, steps };
  }
}
