// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice The naive peer of the gas benchmark: one storage slot and one event per record.
/// Not part of fourflow; bench/gas.py compiles and deploys it on the benchmark's chain.
contract NaiveStore {
    mapping(bytes32 eventHash => uint256 blockNumber) private _storedAt;

    event RecordStored(bytes32 indexed eventHash, uint256 blockNumber);

    function store(bytes32 eventHash) external {
        _storedAt[eventHash] = block.number;
        emit RecordStored(eventHash, block.number);
    }
}
