// Keccak-256 (the pre-standard SHA-3 that Ethereum uses) and EIP-55 checksummed
// addresses. WebCrypto has no keccak, and a sign-in message (EIP-4361) must carry the
// address in EIP-55 case, while wallets often answer eth_requestAccounts in lower case.
//
// A plain, unoptimized Keccak-f[1600] on BigInt lanes: it hashes a 40-character address
// in well under a millisecond, which is all the dashboard asks of it.

const MASK = (1n << 64n) - 1n;
const RATE_BYTES = 136; // 1088 bits: Keccak-256's rate

// round constants of the iota step
// prettier-ignore
const ROUND_CONSTANTS = [
  0x0000000000000001n, 0x0000000000008082n, 0x800000000000808an, 0x8000000080008000n,
  0x000000000000808bn, 0x0000000080000001n, 0x8000000080008081n, 0x8000000000008009n,
  0x000000000000008an, 0x0000000000000088n, 0x0000000080008009n, 0x000000008000000an,
  0x000000008000808bn, 0x800000000000008bn, 0x8000000000008089n, 0x8000000000008003n,
  0x8000000000008002n, 0x8000000000000080n, 0x000000000000800an, 0x800000008000000an,
  0x8000000080008081n, 0x8000000000008080n, 0x0000000080000001n, 0x8000000080008008n,
];

// rotation offsets of the rho step, for lane x + 5y
// prettier-ignore
const ROTATIONS = [
  0, 1, 62, 28, 27,
  36, 44, 6, 55, 20,
  3, 10, 43, 25, 39,
  41, 45, 15, 21, 8,
  18, 2, 61, 56, 14,
];

function rotl(lane, bits) {
  if (bits === 0) return lane;
  const n = BigInt(bits);
  return ((lane << n) | (lane >> (64n - n))) & MASK;
}

// The permutation, in place on 25 lanes indexed x + 5y.
function keccakF(lanes) {
  const c = new Array(5);
  const b = new Array(25);
  for (const constant of ROUND_CONSTANTS) {
    for (let x = 0; x < 5; x++) {
      c[x] = lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20];
    }
    for (let x = 0; x < 5; x++) {
      const d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
      for (let y = 0; y < 25; y += 5) lanes[x + y] ^= d;
    }
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) {
        b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(lanes[x + 5 * y], ROTATIONS[x + 5 * y]);
      }
    }
    for (let y = 0; y < 25; y += 5) {
      for (let x = 0; x < 5; x++) {
        lanes[x + y] = b[x + y] ^ (~b[((x + 1) % 5) + y] & MASK & b[((x + 2) % 5) + y]);
      }
    }
    lanes[0] ^= constant;
  }
}

// Keccak-256 of `bytes` (a Uint8Array): 32 bytes. Padding is Keccak's 0x01 ... 0x80, not
// SHA3-256's 0x06 ... 0x80.
export function keccak256(bytes) {
  const padded = new Uint8Array((Math.floor(bytes.length / RATE_BYTES) + 1) * RATE_BYTES);
  padded.set(bytes);
  padded[bytes.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;

  const lanes = new Array(25).fill(0n);
  for (let block = 0; block < padded.length; block += RATE_BYTES) {
    for (let i = 0; i < RATE_BYTES / 8; i++) {
      lanes[i] ^= readLane(padded, block + 8 * i);
    }
    keccakF(lanes);
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 4; i++) writeLane(out, 8 * i, lanes[i]);
  return out;
}

// lanes are little-endian 64-bit words
function readLane(bytes, at) {
  let lane = 0n;
  for (let k = 7; k >= 0; k--) lane = (lane << 8n) | BigInt(bytes[at + k]);
  return lane;
}

function writeLane(bytes, at, lane) {
  for (let k = 0; k < 8; k++) bytes[at + k] = Number((lane >> BigInt(8 * k)) & 0xffn);
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

// The EIP-55 spelling of a 20-byte hex address: a hex letter is upper case where the
// same position of keccak256(lower-case hex, as ASCII) has a nibble of 8 or more.
export function toChecksumAddress(address) {
  if (!ADDRESS.test(address)) throw new TypeError(`not a 20-byte hex address: ${address}`);
  const lower = address.slice(2).toLowerCase();
  const hash = keccak256(new TextEncoder().encode(lower));
  let out = "0x";
  for (let i = 0; i < 40; i++) {
    const nibble = (hash[i >> 1] >> (i % 2 === 0 ? 4 : 0)) & 0xf;
    out += nibble >= 8 ? lower[i].toUpperCase() : lower[i];
  }
  return out;
}

// True if `address` is all lower case, all upper case, or correctly EIP-55 mixed case:
// the three spellings EIP-55 accepts.
export function isValidAddress(address) {
  if (!ADDRESS.test(address)) return false;
  const digits = address.slice(2);
  if (digits === digits.toLowerCase() || digits === digits.toUpperCase()) return true;
  return toChecksumAddress(address) === address;
}
