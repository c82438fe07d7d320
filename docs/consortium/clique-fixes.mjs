// Preload for the EthereumJS client 0.10.5: node --import <this file> cli.js ... (net.sh copies it
// next to the client's node_modules, where its @ethereumjs imports resolve).
// Clique in EthereumJS stops at the Paris fork, and Shanghai/Cancun imply Paris, so a
// Clique chain is London at most. fourflow's contracts are compiled for evmVersion
// "cancun" (PUSH0, MCOPY). This turns on the opcode-only EIPs of Shanghai and Cancun
// (no header changes) in every Common the client copies: 3651 3855 3860 1153 5656 6780.
// Every node of the network must run with the same list.
import { Common } from '@ethereumjs/common'

const EIPS = (process.env.CLIQUE_EXTRA_EIPS ?? '3651,3855,3860,1153,5656,6780')
  .split(',').filter(Boolean).map(Number)
const copy = Common.prototype.copy
Common.prototype.copy = function () {
  const c = copy.call(this)
  if (c.consensusAlgorithm() === 'clique' && !EIPS.every((e) => c._eips.includes(e))) {
    // setEIPs() refuses 5656 below Shanghai, so set the list and rebuild the caches.
    c._eips = [...new Set([...c._eips, ...EIPS])]
    c._buildParamsCache()
    c._buildActivatedEIPsCache()
  }
  return c
}

// Gaps in the client's pre-merge block propagation (0.10.5) that leave a third signer
// stuck behind on a small Clique network:
//  1. a new block goes in full to only floor(sqrt(peers)) peers, the rest get
//     NewBlockHashes, which the client ignores once its fetcher is done;
//  2. catching up needs a peer whose handshake total difficulty beats ours, and that
//     value is never updated after the handshake, so a lagging node never resyncs.
//  3. a peer's head is guessed from its last known header plus one block per 12 s (the
//     beacon slot), so a node that fell behind catches up slowly.
// For a consortium of a few nodes: send new blocks to every peer; take every block a
// peer announces as that peer's latest header; and when no peer qualifies by handshake
// TD, sync (re-fetch the last 16 blocks) from any eth peer.
import { FullSynchronizer } from '@ethereumjs/client/dist/esm/src/sync/fullsync.js'

const sendNewBlock = FullSynchronizer.prototype.sendNewBlock
FullSynchronizer.prototype.sendNewBlock = function (block, _peers) {
  return sendNewBlock.call(this, block, this.pool.peers)
}
const handleNewBlock = FullSynchronizer.prototype.handleNewBlock
FullSynchronizer.prototype.handleNewBlock = function (block, peer) {
  const known = peer?.eth?.updatedBestHeader
  if (peer?.eth !== undefined && (known === undefined || block.header.number > known.number)) {
    peer.eth.updatedBestHeader = block.header
  }
  return handleNewBlock.call(this, block, peer)
}
const syncWithPeer = FullSynchronizer.prototype.syncWithPeer
FullSynchronizer.prototype.syncWithPeer = function (peer) {
  // each such sync re-fetches from safeReorgDistance (default 100) blocks back: keep it short
  this.config.safeReorgDistance = Math.min(this.config.safeReorgDistance, 16)
  return syncWithPeer.call(this, peer)
}
const best = FullSynchronizer.prototype.best
FullSynchronizer.prototype.best = async function () {
  const peer = await best.call(this)
  if (peer !== undefined) return peer
  const peers = this.pool.peers.filter((p) => this.syncable(p) && p.eth?.status !== undefined)
  return peers[Math.floor(Math.random() * peers.length)]
}

// Unsealed Clique headers (empty extraData) are made in two places: eth_estimateGas runs
// the call in one, and the block builder runs each transaction in one before it seals
// the block. (a) The Clique format check rejects them ("extraData must be 97 bytes on
// non-epoch transition blocks, received 0 bytes"), so every estimate fails; skip the
// check for such headers (a real block with empty extraData still fails the signature
// check on import). (b) Fees go to the block's Clique signer, recovered from the seal:
// the zero address while building, the real signer when the sealed block is executed,
// so any block with a priority fee fails on every node with "invalid block stateRoot".
// While the builder adds a transaction, seal that one header with the signer's key.
import { BlockHeader, cliqueSigHash } from '@ethereumjs/block'
import { BlockBuilder } from '@ethereumjs/vm'
import { secp256k1 } from 'ethereum-cryptography/secp256k1.js'

let sealWith // the signer key, for the next unsealed header only
const formatCheck = BlockHeader.prototype._consensusFormatValidation
BlockHeader.prototype._consensusFormatValidation = function () {
  if (this.common.consensusAlgorithm() === 'clique' && this.extraData.length === 0) {
    if (sealWith !== undefined) {
      const key = sealWith
      sealWith = undefined
      this.extraData = new Uint8Array(97)
      const sig = secp256k1.sign(cliqueSigHash(this), key)
      const seal = new Uint8Array(97)
      seal.set(hexToBytes(sig.r.toString(16).padStart(64, '0')), 32)
      seal.set(hexToBytes(sig.s.toString(16).padStart(64, '0')), 64)
      seal[96] = sig.recovery
      this.extraData = seal
    }
    return
  }
  return formatCheck.call(this)
}
const addTransaction = BlockBuilder.prototype.addTransaction
BlockBuilder.prototype.addTransaction = async function (tx, opts) {
  const key = this.blockOpts.cliqueSigner
  if (key === undefined || this.headerData.extraData !== undefined) {
    return addTransaction.call(this, tx, opts)
  }
  if (!this.checkpointed) {
    // the original awaits this first; done here, it runs on to its header without a
    // pause, so no other header can take the key
    await this.vm.evm.journal.checkpoint()
    this.checkpointed = true
  }
  sealWith = key
  try {
    return await addTransaction.call(this, tx, opts)
  } finally {
    sealWith = undefined
  }
}
function hexToBytes(hex) {
  return Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16))
}

// The client builds its VMs without the EVM option `cliqueSigner`, and the interpreter
// refuses to run any contract code on a PoA chain without it ("Must include cliqueSigner
// function if clique/poa is being used for consensus type"): every contract deployment
// or call, in eth_call, eth_estimateGas and block building, fails. Supply it.
import { cliqueSigner } from '@ethereumjs/block'
import { EVM } from '@ethereumjs/evm'

const runInterpreter = EVM.prototype.runInterpreter
EVM.prototype.runInterpreter = function (message, opts) {
  if (this.common.consensusType() === 'poa' && this._optsCached.cliqueSigner === undefined) {
    this._optsCached.cliqueSigner = cliqueSigner
  }
  return runInterpreter.call(this, message, opts)
}

// No eth_maxPriorityFeePerGas, and eth_feeHistory refuses the "pending" block that
// web3.py then asks for ('"pending" is not yet supported'), so web3.py cannot fill
// EIP-1559 fee fields. Add the method. Its answer is at least 0.1 gwei: the pool takes
// a transaction from a peer only with that tip ("Tx does not pay the minimum gas price
// of 100000000"), and one that stays in the pool of the node it was sent to waits for
// that node's turn to seal.
import { Eth } from '@ethereumjs/client/dist/esm/src/rpc/modules/eth.js'

const MIN_RELAYED_TIP = 100000000n
// (A getter: the RPC manager rebinds `this` of every method it finds on the prototype.)
Object.defineProperty(Eth.prototype, 'maxPriorityFeePerGas', {
  configurable: true,
  get() {
    return async () => {
      const price = BigInt(await this.gasPrice([]))
      const base = (await this._chain.getCanonicalHeadHeader()).calcNextBaseFee()
      const tip = price > base ? price - base : 0n
      return '0x' + (tip > MIN_RELAYED_TIP ? tip : MIN_RELAYED_TIP).toString(16)
    }
  },
})

// Out-of-turn signers wait only rand(signers * 0.5 s) after the period, so two of them
// often seal the same height; every such fork ends in a reorg, and this client then
// loses the orphaned block's transactions (they leave the pool when sealed and do not
// come back) while eth_getTransactionReceipt keeps pointing at the orphan ("value for
// 0x… not found in DB"). Make out-of-turn signers wait one more full period, so the
// in-turn signer wins whenever it is up; the others still take over when it is not.
import { Miner } from '@ethereumjs/client/dist/esm/src/miner/miner.js'

const queueNextAssembly = Miner.prototype.queueNextAssembly
Miner.prototype.queueNextAssembly = async function (timeout) {
  if (this.running && this.config.chainCommon.consensusType() === 'poa') {
    const [signer] = this.config.accounts[0]
    const number = this.service.chain.blocks.latest.header.number + 1n
    const inTurn = await this.service.chain.blockchain.consensus.cliqueSignerInTurn(signer, number)
    if (inTurn === false) timeout = (timeout ?? this.period) + this.period
  }
  return queueNextAssembly.call(this, timeout)
}

// The miner stores a block's receipts before it puts the block in the chain, so a
// receipt asked for in between fails with an internal error ("value for 0x<block hash>
// not found in DB") where a node answers null (not mined yet). Answer null.
const getTransactionReceipt = Eth.prototype.getTransactionReceipt
Eth.prototype.getTransactionReceipt = async function (params) {
  try {
    return await getTransactionReceipt.call(this, params)
  } catch (err) {
    if (String(err?.message ?? err).includes('not found in DB')) return null
    throw err
  }
}

// The miner may start a block on a head the node has imported but not executed yet
// ("State trie does not contain state root"); the error escapes from a timer and the
// client shuts down. Catch it and try again one period later.
const assembleBlock = Miner.prototype.assembleBlock
Miner.prototype.assembleBlock = async function () {
  try {
    return await assembleBlock.call(this)
  } catch (err) {
    this.config.logger?.warn(`Miner: could not assemble a block (${err?.message ?? err}); retrying`)
    this.assembling = false
    return this.queueNextAssembly()
  }
}
