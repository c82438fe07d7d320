// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title fourflow anchor registry
/// @notice Holds the Merkle roots of fourflow's event batches, one gap-free sequence per
/// stream. Roots, leaf counts and time ranges live in storage (logs may be pruned), and
/// each stream keeps a running sha256 accumulator over (root, leafCount) so one call shows
/// whether any batch was dropped or reordered.
/// @dev A stream is named by a short string; its id is sha256(bytes(name)), so a verifier
/// needs sha256 only. Batch trees are merkletools trees: sha256(left || right) inner nodes,
/// and an odd node at the end of a level is promoted unchanged to the next level.
contract AnchorRegistry is AccessControl {
    /// @notice May anchor batches.
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    /// @notice May sign event submissions (logistics firms, custodians, devices' gateways).
    bytes32 public constant SUBMITTER_ROLE = keccak256("SUBMITTER_ROLE");

    uint256 private constant _MAX_STREAM_NAME_BYTES = 64;

    struct Batch {
        bytes32 root;
        uint64 leafCount;
        uint64 firstEventTime; // unix milliseconds
        uint64 lastEventTime; // unix milliseconds
        uint64 anchoredBlock;
    }

    struct StreamHead {
        uint64 nextSeq;
        uint64 totalLeaves;
        bytes32 accumulator;
    }

    mapping(bytes32 streamId => mapping(uint64 seq => Batch)) private _batches;
    mapping(bytes32 streamId => StreamHead) private _heads;

    /// @notice A batch's root was anchored at the next sequence number of its stream.
    event BatchAnchored(
        bytes32 indexed streamId,
        uint64 indexed seq,
        bytes32 root,
        uint64 leafCount,
        uint64 firstEventTime,
        uint64 lastEventTime,
        bytes32 accumulator,
        string stream
    );

    error AnchorRegistrySequenceMismatch(bytes32 streamId, uint64 expected, uint64 got);
    error AnchorRegistryEmptyBatch(bytes32 streamId, uint64 seq);
    error AnchorRegistryZeroRoot(bytes32 streamId, uint64 seq);
    error AnchorRegistryTimeRangeInverted(uint64 firstEventTime, uint64 lastEventTime);
    error AnchorRegistryInvalidStreamName(uint256 length);

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Anchors the root of batch `seq` of `stream`.
    /// @param stream The stream's name, 1 to 64 bytes; its id is sha256 of these bytes.
    /// @param seq Must be exactly the stream's next sequence number (0 for a new stream).
    /// @param root The batch's sha256 Merkle root (merkletools shape).
    /// @param leafCount Number of leaves in the batch, at least 1.
    /// @param firstEventTime Earliest event time in the batch, unix milliseconds.
    /// @param lastEventTime Latest event time in the batch, unix milliseconds.
    function anchor(
        string calldata stream,
        uint64 seq,
        bytes32 root,
        uint64 leafCount,
        uint64 firstEventTime,
        uint64 lastEventTime
    ) external onlyRole(ORACLE_ROLE) {
        bytes32 streamId = _streamId(stream);
        uint64 expected = _heads[streamId].nextSeq;
        if (seq != expected) revert AnchorRegistrySequenceMismatch(streamId, expected, seq);
        if (leafCount == 0) revert AnchorRegistryEmptyBatch(streamId, seq);
        if (root == bytes32(0)) revert AnchorRegistryZeroRoot(streamId, seq);
        if (firstEventTime > lastEventTime) {
            revert AnchorRegistryTimeRangeInverted(firstEventTime, lastEventTime);
        }
        _anchor(stream, streamId, seq, Batch(root, leafCount, firstEventTime, lastEventTime, uint64(block.number)));
    }

    function _streamId(string calldata stream) private pure returns (bytes32) {
        uint256 length = bytes(stream).length;
        if (length == 0 || length > _MAX_STREAM_NAME_BYTES) revert AnchorRegistryInvalidStreamName(length);
        return sha256(bytes(stream));
    }

    /// @dev The one place a batch is written.
    function _anchor(string calldata stream, bytes32 streamId, uint64 seq, Batch memory batch) private {
        StreamHead storage head = _heads[streamId];
        bytes32 accumulator = sha256(abi.encodePacked(head.accumulator, batch.root, batch.leafCount));
        _batches[streamId][seq] = batch;
        head.nextSeq = seq + 1;
        head.totalLeaves += batch.leafCount;
        head.accumulator = accumulator;
        emit BatchAnchored(
            streamId,
            seq,
            batch.root,
            batch.leafCount,
            batch.firstEventTime,
            batch.lastEventTime,
            accumulator,
            stream
        );
    }

    /// @notice The anchored batch `seq` of stream `streamId`; all fields are zero if none.
    function batchOf(bytes32 streamId, uint64 seq) external view returns (Batch memory) {
        return _batches[streamId][seq];
    }

    /// @notice The stream's next sequence number, leaves anchored so far and accumulator.
    function headOf(bytes32 streamId) external view returns (StreamHead memory) {
        return _heads[streamId];
    }

    /// @notice Whether `leaf` sits at `leafIndex` of anchored batch `seq` of `streamId`.
    /// @dev The path's length and the side of each sibling are fixed by (leafIndex, leafCount),
    /// with leafCount read from storage: a proof of any other shape is rejected.
    /// @param siblings The merkletools proof's hashes, from the leaf's level upwards.
    function includes(
        bytes32 streamId,
        uint64 seq,
        bytes32 leaf,
        uint256 leafIndex,
        bytes32[] calldata siblings
    ) external view returns (bool) {
        Batch storage batch = _batches[streamId][seq];
        uint256 width = batch.leafCount;
        if (width == 0 || leafIndex >= width) return false;
        bytes32 node = leaf;
        uint256 used = 0;
        uint256 index = leafIndex;
        while (width > 1) {
            if (index % 2 == 1) {
                if (used == siblings.length) return false;
                node = sha256(abi.encodePacked(siblings[used++], node));
            } else if (index + 1 < width) {
                if (used == siblings.length) return false;
                node = sha256(abi.encodePacked(node, siblings[used++]));
            } // else: the last node of an odd level is promoted unchanged
            index /= 2;
            width = (width + 1) / 2;
        }
        return used == siblings.length && node == batch.root;
    }
}
