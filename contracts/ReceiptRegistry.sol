// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @title fourflow collateral receipts
/// @notice One ERC-721 receipt per goods lot or herd, issued by the custodian that holds
/// the goods (warehouse, ranch, third-party supervisor) to the borrower who owns them.
/// A receipt carries its quantity, unit, asset class, location and registry references,
/// and is backed by a set of physical identifier keys (lot LGTIN, SSCC, EPC, ear tag).
/// @dev The lien index maps each identifier key to the one live receipt it backs, across
/// every custodian and lender: a key can never back two live receipts. A pledged receipt
/// is locked: it moves, and its goods change, only through the pledge registry.
contract ReceiptRegistry is ERC721, AccessControl {
    /// @notice May issue receipts and change the goods behind the receipts it issued.
    bytes32 public constant CUSTODIAN_ROLE = keccak256("CUSTODIAN_ROLE");
    /// @notice Held by the pledge registry contract: locks, adjusts and seizes receipts.
    bytes32 public constant PLEDGE_REGISTRY_ROLE = keccak256("PLEDGE_REGISTRY_ROLE");
    /// @notice Most identifier keys bound or freed in one call; larger sets take several.
    uint256 public constant MAX_KEYS_PER_CALL = 256;

    enum Status {
        None,
        Live,
        Retired
    }

    /// @notice Why a receipt's quantity changed.
    enum Change {
        Added, // goods arrived at the custodian
        Delivered, // goods left to the owner or its buyer
        Sold,
        Died, // livestock
        Culled, // livestock
        Lost,
        Released, // left the custodian under a pledge release
        SwappedOut, // dynamic pledge: replaced by other goods
        SwappedIn
    }

    struct Receipt {
        address custodian;
        uint64 quantity;
        Status status;
        uint64 issuedAt;
        uint64 keyCount; // identifier keys currently bound
        uint256 pledgeId; // 0 when not pledged
        bytes32 assetClass; // e.g. "steel.hrc", right-padded ASCII
        bytes32 unit; // e.g. "kg", "head"
        bytes32 identifiersDigest; // sha256 chain over every key ever bound, in order
        string location; // GS1 SGLN URN or a postal address
        string registration; // 动产融资统一登记 registration number, may be empty
        string warehouseReceiptCode; // national warehouse-receipt code, may be empty
    }

    /// @notice What the pledge registry reads: the static part of a receipt.
    struct Collateral {
        address owner;
        address custodian;
        uint64 quantity;
        Status status;
        uint256 pledgeId;
        bytes32 assetClass;
    }

    struct Issue {
        address owner;
        bytes32 assetClass;
        bytes32 unit;
        uint64 quantity;
        string location;
        string registration;
        string warehouseReceiptCode;
        bytes32 ref; // hash of the custodian's inbound document
    }

    mapping(uint256 receiptId => Receipt) private _receipts;
    mapping(bytes32 key => uint256 receiptId) private _backing;
    uint256 private _lastId;
    string private _base;

    event ReceiptIssued(uint256 indexed receiptId, address indexed owner, address indexed custodian, Issue issue);
    event ReceiptKeysBound(uint256 indexed receiptId, bytes32[] keys, uint64 keyCount, bytes32 identifiersDigest);
    event ReceiptKeysFreed(uint256 indexed receiptId, bytes32[] keys, uint64 keyCount);
    event ReceiptQuantityChanged(uint256 indexed receiptId, Change change, uint64 delta, uint64 quantity, bytes32 ref);
    event ReceiptRetired(uint256 indexed receiptId, Change change, bytes32 ref);
    event ReceiptLocked(uint256 indexed receiptId, uint256 indexed pledgeId);
    event ReceiptUnlocked(uint256 indexed receiptId, uint256 indexed pledgeId);

    error ReceiptRegistryUnknownReceipt(uint256 receiptId);
    error ReceiptRegistryNotLive(uint256 receiptId);
    error ReceiptRegistryNotCustodian(uint256 receiptId, address custodian, address caller);
    error ReceiptRegistryIdentifierAlreadyBacked(bytes32 key, uint256 receiptId);
    error ReceiptRegistryIdentifierNotBacking(bytes32 key, uint256 receiptId);
    error ReceiptRegistryZeroKey(uint256 index);
    error ReceiptRegistryTooManyKeys(uint256 count, uint256 max);
    error ReceiptRegistryZeroQuantity();
    error ReceiptRegistryQuantityExceeded(uint256 receiptId, uint64 quantity, uint64 requested);
    error ReceiptRegistryInvalidChange(Change change);
    error ReceiptRegistryPledged(uint256 receiptId, uint256 pledgeId);
    error ReceiptRegistryNotPledged(uint256 receiptId);
    error ReceiptRegistryZeroOwner();
    error ReceiptRegistryMissingAssetClass();

    constructor(address admin) ERC721("fourflow collateral receipt", "FFR") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    // --- custodian -------------------------------------------------------------------

    /// @notice Issues a receipt for goods the caller holds, owned by `issue.owner`, backed
    /// by `keys` (sha256 of each physical identifier). Reverts if any key backs a live
    /// receipt already.
    function issue(Issue calldata issue_, bytes32[] calldata keys)
        external
        onlyRole(CUSTODIAN_ROLE)
        returns (uint256 receiptId)
    {
        if (issue_.owner == address(0)) revert ReceiptRegistryZeroOwner();
        if (issue_.quantity == 0) revert ReceiptRegistryZeroQuantity();
        if (issue_.assetClass == bytes32(0) || issue_.unit == bytes32(0)) revert ReceiptRegistryMissingAssetClass();
        receiptId = ++_lastId;
        Receipt storage receipt = _receipts[receiptId];
        receipt.custodian = msg.sender;
        receipt.quantity = issue_.quantity;
        receipt.status = Status.Live;
        receipt.issuedAt = uint64(block.timestamp);
        receipt.assetClass = issue_.assetClass;
        receipt.unit = issue_.unit;
        receipt.location = issue_.location;
        receipt.registration = issue_.registration;
        receipt.warehouseReceiptCode = issue_.warehouseReceiptCode;
        _mint(issue_.owner, receiptId);
        emit ReceiptIssued(receiptId, issue_.owner, msg.sender, issue_);
        _bind(receiptId, keys);
    }

    /// @notice Binds more identifier keys to an unpledged receipt (large sets take several calls).
    function bindKeys(uint256 receiptId, bytes32[] calldata keys) external {
        _onlyCustodianOfFree(receiptId);
        _bind(receiptId, keys);
    }

    /// @notice Goods arrived for an unpledged receipt.
    function addGoods(uint256 receiptId, uint64 quantity, bytes32[] calldata keys, bytes32 ref) external {
        _onlyCustodianOfFree(receiptId);
        _increase(receiptId, quantity, Change.Added, ref);
        _bind(receiptId, keys);
    }

    /// @notice Goods left the custodian (delivered, sold, died, culled, lost); `keys` are
    /// the identifiers that left with them. Reaching zero retires (burns) the receipt.
    function removeGoods(uint256 receiptId, uint64 quantity, Change change, bytes32[] calldata keys, bytes32 ref)
        external
    {
        _onlyCustodianOfFree(receiptId);
        if (change < Change.Delivered || change > Change.Lost) revert ReceiptRegistryInvalidChange(change);
        _free(receiptId, keys);
        _decrease(receiptId, quantity, change, ref);
    }

    // --- pledge registry ---------------------------------------------------------------

    /// @notice Locks a receipt into pledge `pledgeId`: no transfer, no direct change.
    function lock(uint256 receiptId, uint256 pledgeId) external onlyRole(PLEDGE_REGISTRY_ROLE) {
        Receipt storage receipt = _live(receiptId);
        if (receipt.pledgeId != 0) revert ReceiptRegistryPledged(receiptId, receipt.pledgeId);
        receipt.pledgeId = pledgeId;
        emit ReceiptLocked(receiptId, pledgeId);
    }

    /// @notice Lifts the lock of a released pledge.
    function unlock(uint256 receiptId) external onlyRole(PLEDGE_REGISTRY_ROLE) {
        Receipt storage receipt = _live(receiptId);
        uint256 pledgeId = receipt.pledgeId;
        if (pledgeId == 0) revert ReceiptRegistryNotPledged(receiptId);
        receipt.pledgeId = 0;
        emit ReceiptUnlocked(receiptId, pledgeId);
    }

    /// @notice Lifts the lock of a liquidated pledge and hands the receipt to `buyer`.
    function seize(uint256 receiptId, address buyer) external onlyRole(PLEDGE_REGISTRY_ROLE) {
        Receipt storage receipt = _live(receiptId);
        uint256 pledgeId = receipt.pledgeId;
        if (pledgeId == 0) revert ReceiptRegistryNotPledged(receiptId);
        receipt.pledgeId = 0;
        emit ReceiptUnlocked(receiptId, pledgeId);
        _transfer(_ownerOf(receiptId), buyer, receiptId);
    }

    /// @notice Changes the goods behind a pledged receipt; the pledge registry has
    /// checked its rules first. Removal cannot reach zero: a pledge keeps some goods.
    function adjustPledged(
        uint256 receiptId,
        uint64 added,
        uint64 removed,
        bytes32[] calldata keysIn,
        bytes32[] calldata keysOut,
        Change change,
        bytes32 ref
    ) external onlyRole(PLEDGE_REGISTRY_ROLE) {
        Receipt storage receipt = _live(receiptId);
        if (receipt.pledgeId == 0) revert ReceiptRegistryNotPledged(receiptId);
        if (removed != 0) {
            if (removed >= receipt.quantity) {
                revert ReceiptRegistryQuantityExceeded(receiptId, receipt.quantity - 1, removed);
            }
            _free(receiptId, keysOut);
            _decrease(receiptId, removed, change == Change.SwappedIn ? Change.SwappedOut : change, ref);
        }
        if (added != 0) {
            _increase(receiptId, added, change == Change.SwappedIn ? Change.SwappedIn : Change.Added, ref);
            _bind(receiptId, keysIn);
        }
    }

    // --- admin -------------------------------------------------------------------------

    /// @notice Where wallets and explorers fetch receipt metadata (the fourflow API).
    function setBaseURI(string calldata base) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _base = base;
    }

    // --- views -------------------------------------------------------------------------

    function receiptOf(uint256 receiptId) external view returns (Receipt memory) {
        return _existing(receiptId);
    }

    function collateralOf(uint256 receiptId) external view returns (Collateral memory) {
        Receipt storage receipt = _existing(receiptId);
        return Collateral(
            _ownerOf(receiptId), receipt.custodian, receipt.quantity, receipt.status, receipt.pledgeId, receipt.assetClass
        );
    }

    /// @notice The live receipt `key` backs, 0 if none: the lien index.
    function backingOf(bytes32 key) external view returns (uint256) {
        uint256 receiptId = _backing[key];
        return _receipts[receiptId].status == Status.Live ? receiptId : 0;
    }

    function lastReceiptId() external view returns (uint256) {
        return _lastId;
    }

    function supportsInterface(bytes4 interfaceId) public view override(ERC721, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }

    // --- internals -----------------------------------------------------------------------

    function _baseURI() internal view override returns (string memory) {
        return _base;
    }

    /// @dev Every ownership change passes here: a pledged receipt never moves.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address) {
        uint256 pledgeId = _receipts[tokenId].pledgeId;
        if (pledgeId != 0) revert ReceiptRegistryPledged(tokenId, pledgeId);
        return super._update(to, tokenId, auth);
    }

    function _existing(uint256 receiptId) private view returns (Receipt storage receipt) {
        receipt = _receipts[receiptId];
        if (receipt.status == Status.None) revert ReceiptRegistryUnknownReceipt(receiptId);
    }

    function _live(uint256 receiptId) private view returns (Receipt storage receipt) {
        receipt = _existing(receiptId);
        if (receipt.status != Status.Live) revert ReceiptRegistryNotLive(receiptId);
    }

    function _onlyCustodianOfFree(uint256 receiptId) private view {
        Receipt storage receipt = _live(receiptId);
        if (receipt.custodian != msg.sender || !hasRole(CUSTODIAN_ROLE, msg.sender)) {
            revert ReceiptRegistryNotCustodian(receiptId, receipt.custodian, msg.sender);
        }
        if (receipt.pledgeId != 0) revert ReceiptRegistryPledged(receiptId, receipt.pledgeId);
    }

    function _checkKeyCount(uint256 count) private pure {
        if (count > MAX_KEYS_PER_CALL) revert ReceiptRegistryTooManyKeys(count, MAX_KEYS_PER_CALL);
    }

    /// @dev The one place identifiers are bound: the lien index's only writer of non-zero ids.
    function _bind(uint256 receiptId, bytes32[] calldata keys) private {
        if (keys.length == 0) return;
        _checkKeyCount(keys.length);
        Receipt storage receipt = _receipts[receiptId];
        bytes32 digest = receipt.identifiersDigest;
        for (uint256 i = 0; i < keys.length; ++i) {
            bytes32 key = keys[i];
            if (key == bytes32(0)) revert ReceiptRegistryZeroKey(i);
            uint256 holder = _backing[key];
            if (holder != 0 && _receipts[holder].status == Status.Live) {
                revert ReceiptRegistryIdentifierAlreadyBacked(key, holder);
            }
            _backing[key] = receiptId;
            digest = sha256(abi.encodePacked(digest, key));
        }
        receipt.identifiersDigest = digest;
        receipt.keyCount += uint64(keys.length);
        emit ReceiptKeysBound(receiptId, keys, receipt.keyCount, digest);
    }

    function _free(uint256 receiptId, bytes32[] calldata keys) private {
        if (keys.length == 0) return;
        _checkKeyCount(keys.length);
        for (uint256 i = 0; i < keys.length; ++i) {
            if (_backing[keys[i]] != receiptId) revert ReceiptRegistryIdentifierNotBacking(keys[i], receiptId);
            delete _backing[keys[i]];
        }
        Receipt storage receipt = _receipts[receiptId];
        receipt.keyCount -= uint64(keys.length);
        emit ReceiptKeysFreed(receiptId, keys, receipt.keyCount);
    }

    function _increase(uint256 receiptId, uint64 quantity, Change change, bytes32 ref) private {
        if (quantity == 0) revert ReceiptRegistryZeroQuantity();
        Receipt storage receipt = _receipts[receiptId];
        receipt.quantity += quantity;
        emit ReceiptQuantityChanged(receiptId, change, quantity, receipt.quantity, ref);
    }

    function _decrease(uint256 receiptId, uint64 quantity, Change change, bytes32 ref) private {
        if (quantity == 0) revert ReceiptRegistryZeroQuantity();
        Receipt storage receipt = _receipts[receiptId];
        if (quantity > receipt.quantity) revert ReceiptRegistryQuantityExceeded(receiptId, receipt.quantity, quantity);
        receipt.quantity -= quantity;
        emit ReceiptQuantityChanged(receiptId, change, quantity, receipt.quantity, ref);
        if (receipt.quantity == 0) {
            receipt.status = Status.Retired;
            _burn(receiptId);
            emit ReceiptRetired(receiptId, change, ref);
        }
    }
}
