// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

import {AnchorRegistry} from "./AnchorRegistry.sol";
import {PriceFeed} from "./PriceFeed.sol";
import {ReceiptRegistry} from "./ReceiptRegistry.sol";

/// @title fourflow pledges
/// @notice Pledge lending against collateral receipts: consent of both parties, capital
/// flows, valuation and loan-to-value, warning and liquidation lines with margin calls,
/// covenant facts that cite anchored evidence, freezes, static and dynamic release, and
/// liquidation. Money moves off-chain (bank transfers); every movement is recorded here
/// with its reference, and the rules decide which movements are allowed.
/// @dev Amounts are integer minor units of the pledge's currency (fen, cents). Ratios are
/// basis points. value = floor(quantity * price / PRICE_SCALE) + cash margin, where the
/// quantity is the lower of the booked quantity and the latest observed one, and the price
/// is PriceFeed's min(spot, average). LTV = outstanding / value.
contract PledgeRegistry is AccessControl, EIP712, Nonces {
    /// @notice Banks: open pledges and record their capital flows.
    bytes32 public constant LENDER_ROLE = keccak256("LENDER_ROLE");
    /// @notice Report covenant facts (each citing anchored evidence).
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    /// @notice Third-party auditors: may freeze a pledge on a finding, nothing else.
    bytes32 public constant AUDITOR_ROLE = keccak256("AUDITOR_ROLE");

    uint256 public constant BPS = 10_000;

    uint8 public constant FROZEN_BELOW_MINIMUM = 1;
    uint8 public constant FROZEN_UNAUTHORIZED_MOVEMENT = 2;
    uint8 public constant FROZEN_TAG_REMOVED = 4;
    uint8 public constant FROZEN_STALE_DATA = 8;
    uint8 public constant FROZEN_STALE_PRICE = 16;
    uint8 public constant FROZEN_AUDIT_FINDING = 32;
    uint8 public constant FROZEN_COVENANT_BREACH = 64;

    bytes32 public constant TERMS_TYPEHASH = keccak256(
        "Terms(uint256 receiptId,address lender,address payee,bytes32 currency,uint256 principal,"
        "uint16 pledgeRateBps,uint16 warningLtvBps,uint16 liquidationLtvBps,uint64 minQuantity,"
        "uint256 minValue,uint32 maxDataAge,uint32 curePeriod,uint64 maturity,uint8 mode)"
    );
    bytes32 public constant CONSENT_TYPEHASH = keccak256(
        "PledgeConsent(Terms terms,uint256 nonce,uint64 deadline)"
        "Terms(uint256 receiptId,address lender,address payee,bytes32 currency,uint256 principal,"
        "uint16 pledgeRateBps,uint16 warningLtvBps,uint16 liquidationLtvBps,uint64 minQuantity,"
        "uint256 minValue,uint32 maxDataAge,uint32 curePeriod,uint64 maturity,uint8 mode)"
    );

    enum Mode {
        Static, // goods leave only against repayment
        Dynamic // goods may be added, swapped and taken out within the lines
    }

    enum Status {
        None,
        Active,
        Released,
        Liquidated
    }

    enum FactKind {
        Quantity, // head count, stock level
        UnauthorizedMovement,
        TagRemoval,
        CovenantBreach // a performance covenant broken: utilization, output, revenue, declarations
    }

    enum Ground {
        None,
        LiquidationLine,
        UncuredMarginCall,
        Default
    }

    /// @notice What borrower and lender agree on; hashed as EIP-712 `Terms`.
    struct Terms {
        uint256 receiptId;
        address lender;
        address payee; // disbursements go here only (use of proceeds)
        bytes32 currency; // ISO 4217 code, right-padded ASCII
        uint256 principal; // facility amount, minor units
        uint16 pledgeRateBps; // maximum LTV for disbursing and releasing
        uint16 warningLtvBps; // at or above: margin call
        uint16 liquidationLtvBps; // at or above: the lender may liquidate
        uint64 minQuantity; // 最低控货量, may be 0
        uint256 minValue; // 最低控货值, minor units, may be 0
        uint32 maxDataAge; // seconds an observation or a price may age
        uint32 curePeriod; // seconds to cure a margin call
        uint64 maturity; // unix seconds; outstanding after it is a default
        Mode mode;
    }

    struct Pledge {
        Terms terms;
        address borrower;
        Status status;
        uint8 frozen; // FROZEN_* bits
        uint64 openedAt;
        uint64 callDeadline; // 0 when no margin call is open
        uint64 releaseQuantity; // pending release instruction, 0 if none
        bool releaseAll; // pending full-release instruction
        uint256 disbursed;
        uint256 repaid;
        uint256 outstanding;
        uint256 margin; // cash margin held by the lender
        uint256 releaseCredit; // static mode: value repayments have freed, minor units
        bytes32 assetClass; // the receipt's, fixed for its life
    }

    struct Observation {
        uint64 quantity;
        uint64 observedAt; // unix seconds
    }

    /// @notice A fact about the goods behind a receipt, as an oracle saw it.
    struct Fact {
        uint256 receiptId;
        FactKind kind;
        uint64 quantity; // Quantity facts only
        uint64 observedAt; // unix seconds; inside the cited batch's time range
    }

    /// @notice Where a fact's evidence sits: leaf `leaf` at `leafIndex` of anchored batch `seq`.
    struct Evidence {
        bytes32 streamId;
        uint64 seq;
        bytes32 leaf;
        uint256 leafIndex;
        bytes32[] siblings;
    }

    struct Valuation {
        uint64 quantity; // min(booked, observed)
        uint256 price; // PriceFeed min(spot, average); 0 if no price
        uint256 goodsValue;
        uint256 value; // goodsValue + margin
        uint256 outstanding;
        uint256 ltvBps; // rounded up; type(uint256).max if value is 0 and outstanding is not
        uint64 priceObservedAt;
    }

    struct Liquidation {
        Ground ground;
        uint256 proceeds;
        uint256 marginApplied;
        uint256 proceedsApplied;
        uint256 surplus; // owed to the borrower
        uint256 shortfall; // still owed by the borrower, unsecured
    }

    AnchorRegistry public immutable anchors;
    ReceiptRegistry public immutable receipts;
    PriceFeed public immutable prices;
    uint256 private immutable _priceScale;

    mapping(uint256 pledgeId => Pledge) private _pledges;
    mapping(uint256 receiptId => Observation) private _observations;
    mapping(bytes32 leaf => bool) private _evidenceUsed;
    mapping(address borrower => mapping(bytes32 digest => bool)) private _consents;
    mapping(address lender => mapping(bytes32 assetClass => uint16 bps)) private _rates;
    uint256 private _lastId;

    event PledgeRateSet(address indexed lender, bytes32 indexed assetClass, uint16 pledgeRateBps);
    event PledgeConsented(address indexed borrower, bytes32 indexed digest);
    event PledgeOpened(
        uint256 indexed pledgeId, uint256 indexed receiptId, address indexed borrower, Terms terms, bytes32 digest
    );
    event Disbursed(uint256 indexed pledgeId, address indexed payee, uint256 amount, uint256 outstanding, bytes32 ref);
    event Repaid(uint256 indexed pledgeId, uint256 amount, uint256 outstanding, uint256 releaseCredit, bytes32 ref);
    event MarginToppedUp(uint256 indexed pledgeId, uint256 amount, uint256 margin, bytes32 ref);
    event MarginCallOpened(uint256 indexed pledgeId, uint256 ltvBps, uint64 deadline);
    event MarginCallCured(uint256 indexed pledgeId, uint256 ltvBps);
    event FactReported(
        uint256 indexed receiptId,
        uint256 indexed pledgeId,
        FactKind kind,
        uint64 quantity,
        uint64 observedAt,
        bytes32 streamId,
        uint64 seq,
        bytes32 leaf
    );
    /// @notice `reasons`: the bits this call set; `frozen`: every bit set now.
    event PledgeFrozen(uint256 indexed pledgeId, uint8 reasons, uint8 frozen, bytes32 ref);
    event PledgeUnfrozen(uint256 indexed pledgeId, uint8 cleared);
    event GoodsAdded(uint256 indexed pledgeId, uint64 quantity, bytes32 ref);
    event GoodsSwapped(uint256 indexed pledgeId, uint64 quantityOut, uint64 quantityIn, bytes32 ref);
    event ReleaseInstructed(uint256 indexed pledgeId, uint64 quantity, bool full);
    event GoodsReleased(uint256 indexed pledgeId, uint64 quantity, uint256 creditUsed, bytes32 ref);
    event PledgeReleased(uint256 indexed pledgeId, uint256 marginReturned, bytes32 ref);
    event PledgeLiquidated(uint256 indexed pledgeId, address indexed buyer, Liquidation outcome, bytes32 ref);

    error PledgeRegistryUnknownPledge(uint256 pledgeId);
    error PledgeRegistryNotActive(uint256 pledgeId, Status status);
    error PledgeRegistryNotLender(uint256 pledgeId, address lender, address caller);
    error PledgeRegistryNotCustodian(uint256 pledgeId, address custodian, address caller);
    error PledgeRegistryReceiptNotLive(uint256 receiptId);
    error PledgeRegistryAlreadyPledged(uint256 receiptId, uint256 pledgeId);
    error PledgeRegistryAssetClassNotAccepted(address lender, bytes32 assetClass);
    error PledgeRegistryInvalidTerms(string reason);
    error PledgeRegistryConsentExpired(uint64 deadline, uint256 blockTime);
    error PledgeRegistryNoConsent(address borrower, bytes32 digest);
    error PledgeRegistryFrozen(uint256 pledgeId, uint8 frozen);
    error PledgeRegistryNotFrozen(uint256 pledgeId);
    error PledgeRegistryZeroAmount();
    error PledgeRegistryWrongPayee(uint256 pledgeId, address payee, address requested);
    error PledgeRegistryPrincipalExceeded(uint256 pledgeId, uint256 available, uint256 requested);
    error PledgeRegistryMatured(uint256 pledgeId, uint64 maturity);
    error PledgeRegistryNoPrice(bytes32 assetClass, bytes32 currency);
    error PledgeRegistryLtvExceeded(uint256 pledgeId, uint256 ltvBps, uint16 pledgeRateBps);
    error PledgeRegistryBelowMinimum(uint256 pledgeId, uint64 quantity, uint256 goodsValue);
    error PledgeRegistryRepaymentExceedsOutstanding(uint256 pledgeId, uint256 outstanding, uint256 amount);
    error PledgeRegistryOutstanding(uint256 pledgeId, uint256 outstanding);
    error PledgeRegistryReleaseBeyondAllowance(uint256 pledgeId, uint64 allowed, uint64 requested);
    error PledgeRegistryNoInstruction(uint256 pledgeId);
    error PledgeRegistryNotDynamic(uint256 pledgeId);
    error PledgeRegistrySwapReducesGoods(uint256 pledgeId, uint64 quantityOut, uint64 quantityIn);
    error PledgeRegistryEvidenceReplayed(bytes32 leaf);
    error PledgeRegistryEvidenceNotAnchored(bytes32 streamId, uint64 seq, bytes32 leaf);
    error PledgeRegistryEvidenceOutsideBatch(uint64 observedAt, uint64 firstEventTime, uint64 lastEventTime);
    error PledgeRegistryFromFuture(uint64 observedAt, uint256 blockTime);
    error PledgeRegistryObservationNotNewer(uint256 receiptId, uint64 latest, uint64 observedAt);
    error PledgeRegistryNotStale(uint256 pledgeId, uint256 dataAge, uint256 priceAge, uint32 maxDataAge);
    error PledgeRegistryLiquidationNotAllowed(uint256 pledgeId, uint256 ltvBps, uint64 callDeadline, uint64 maturity);
    error PledgeRegistryZeroBuyer();
    error PledgeRegistryInvalidRate(uint16 pledgeRateBps);

    constructor(address admin, AnchorRegistry anchors_, ReceiptRegistry receipts_, PriceFeed prices_)
        EIP712("fourflow pledges", "1")
    {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        anchors = anchors_;
        receipts = receipts_;
        prices = prices_;
        _priceScale = prices_.PRICE_SCALE();
    }

    // --- lender policy and consent ----------------------------------------------------------

    /// @notice The caller's maximum LTV for `assetClass` (e.g. 6000 for steel); 0 refuses it.
    function setPledgeRate(bytes32 assetClass, uint16 pledgeRateBps) external onlyRole(LENDER_ROLE) {
        if (pledgeRateBps > BPS) revert PledgeRegistryInvalidRate(pledgeRateBps);
        _rates[msg.sender][assetClass] = pledgeRateBps;
        emit PledgeRateSet(msg.sender, assetClass, pledgeRateBps);
    }

    /// @notice Borrower's consent by transaction to the EIP-712 digest of (terms, nonce, deadline).
    function consent(bytes32 digest) external {
        _consents[msg.sender][digest] = true;
        emit PledgeConsented(msg.sender, digest);
    }

    /// @notice Opens a pledge on `terms.receiptId`. The caller is the lender; the receipt's
    /// owner consents by `signature` over the EIP-712 digest, or by an earlier `consent`
    /// transaction if `signature` is empty.
    function open(Terms calldata terms, uint256 nonce, uint64 deadline, bytes calldata signature)
        external
        onlyRole(LENDER_ROLE)
        returns (uint256 pledgeId)
    {
        if (terms.lender != msg.sender) revert PledgeRegistryNotLender(0, terms.lender, msg.sender);
        ReceiptRegistry.Collateral memory collateral = receipts.collateralOf(terms.receiptId);
        if (collateral.status != ReceiptRegistry.Status.Live) revert PledgeRegistryReceiptNotLive(terms.receiptId);
        if (collateral.pledgeId != 0) revert PledgeRegistryAlreadyPledged(terms.receiptId, collateral.pledgeId);
        _validateTerms(terms, collateral.assetClass);
        uint64 quantity = collateral.quantity;
        Observation storage observed = _observations[terms.receiptId];
        if (observed.observedAt != 0 && observed.quantity < quantity) quantity = observed.quantity;
        if (quantity < terms.minQuantity) revert PledgeRegistryBelowMinimum(0, quantity, 0);
        if (deadline < block.timestamp) revert PledgeRegistryConsentExpired(deadline, block.timestamp);
        bytes32 digest = consentDigest(terms, nonce, deadline);
        _checkConsent(collateral.owner, digest, signature);
        _useCheckedNonce(collateral.owner, nonce);

        pledgeId = ++_lastId;
        Pledge storage pledge = _pledges[pledgeId];
        pledge.terms = terms;
        pledge.borrower = collateral.owner;
        pledge.status = Status.Active;
        pledge.openedAt = uint64(block.timestamp);
        pledge.assetClass = collateral.assetClass;
        emit PledgeOpened(pledgeId, terms.receiptId, collateral.owner, terms, digest);
        receipts.lock(terms.receiptId, pledgeId);
    }

    // --- capital flow -----------------------------------------------------------------------

    /// @notice Records a disbursement to the designated payee. Not while frozen, not past
    /// maturity, never beyond the principal, and only while LTV stays within the pledge rate.
    function disburse(uint256 pledgeId, uint256 amount, address payee, bytes32 ref) external {
        Pledge storage pledge = _lenderAction(pledgeId);
        _requireNotFrozen(pledgeId, pledge);
        if (amount == 0) revert PledgeRegistryZeroAmount();
        if (payee != pledge.terms.payee) revert PledgeRegistryWrongPayee(pledgeId, pledge.terms.payee, payee);
        if (block.timestamp > pledge.terms.maturity) revert PledgeRegistryMatured(pledgeId, pledge.terms.maturity);
        uint256 available = pledge.terms.principal - pledge.disbursed;
        if (amount > available) revert PledgeRegistryPrincipalExceeded(pledgeId, available, amount);
        Valuation memory valuation = _valuation(pledge, _booked(pledge), true);
        uint256 outstanding = pledge.outstanding + amount;
        if (outstanding * BPS > uint256(pledge.terms.pledgeRateBps) * valuation.value) {
            revert PledgeRegistryLtvExceeded(pledgeId, _ltv(outstanding, valuation.value), pledge.terms.pledgeRateBps);
        }
        pledge.disbursed += amount;
        pledge.outstanding = outstanding;
        emit Disbursed(pledgeId, payee, amount, outstanding, ref);
    }

    /// @notice Records a repayment the lender received. In static mode each repayment P
    /// frees P / pledgeRate of value for release.
    function repay(uint256 pledgeId, uint256 amount, bytes32 ref) external {
        Pledge storage pledge = _lenderAction(pledgeId);
        if (amount == 0) revert PledgeRegistryZeroAmount();
        if (amount > pledge.outstanding) {
            revert PledgeRegistryRepaymentExceedsOutstanding(pledgeId, pledge.outstanding, amount);
        }
        pledge.outstanding -= amount;
        pledge.repaid += amount;
        if (pledge.terms.mode == Mode.Static) {
            pledge.releaseCredit += amount * BPS / pledge.terms.pledgeRateBps;
        }
        emit Repaid(pledgeId, amount, pledge.outstanding, pledge.releaseCredit, ref);
        _checkLines(pledgeId, pledge, false);
    }

    /// @notice Records cash margin (保证金) the borrower paid in; it counts as collateral value.
    function topUpMargin(uint256 pledgeId, uint256 amount, bytes32 ref) external {
        Pledge storage pledge = _lenderAction(pledgeId);
        if (amount == 0) revert PledgeRegistryZeroAmount();
        pledge.margin += amount;
        emit MarginToppedUp(pledgeId, amount, pledge.margin, ref);
        _checkLines(pledgeId, pledge, false);
    }

    // --- lines --------------------------------------------------------------------------------

    /// @notice Anyone: opens a margin call if LTV reached the warning line, cures it if
    /// LTV is back below it.
    function checkLines(uint256 pledgeId) external {
        _checkLines(pledgeId, _active(pledgeId), true);
    }

    // --- covenant facts ---------------------------------------------------------------------

    /// @notice Reports a fact about a receipt's goods, citing the anchored event it came
    /// from. A count under the pledge's minimum, an unauthorized movement, a removed tag or
    /// a broken performance covenant freezes the pledge. Each evidence leaf backs one fact only.
    function reportFact(Fact calldata fact, Evidence calldata evidence) external onlyRole(ORACLE_ROLE) {
        ReceiptRegistry.Collateral memory collateral = receipts.collateralOf(fact.receiptId);
        if (collateral.status != ReceiptRegistry.Status.Live) revert PledgeRegistryReceiptNotLive(fact.receiptId);
        if (fact.observedAt > block.timestamp) revert PledgeRegistryFromFuture(fact.observedAt, block.timestamp);
        _useEvidence(evidence, fact.observedAt);
        if (fact.kind == FactKind.Quantity) {
            Observation storage latest = _observations[fact.receiptId];
            if (fact.observedAt <= latest.observedAt) {
                revert PledgeRegistryObservationNotNewer(fact.receiptId, latest.observedAt, fact.observedAt);
            }
            latest.quantity = fact.quantity;
            latest.observedAt = fact.observedAt;
        }
        emit FactReported(
            fact.receiptId,
            collateral.pledgeId,
            fact.kind,
            fact.quantity,
            fact.observedAt,
            evidence.streamId,
            evidence.seq,
            evidence.leaf
        );
        if (collateral.pledgeId == 0) return;
        Pledge storage pledge = _pledges[collateral.pledgeId];
        uint8 reasons;
        if (fact.kind == FactKind.UnauthorizedMovement) reasons = FROZEN_UNAUTHORIZED_MOVEMENT;
        else if (fact.kind == FactKind.TagRemoval) reasons = FROZEN_TAG_REMOVED;
        else if (fact.kind == FactKind.CovenantBreach) reasons = FROZEN_COVENANT_BREACH;
        else if (!_aboveMinimum(pledge, _valuation(pledge, collateral.quantity, false))) reasons = FROZEN_BELOW_MINIMUM;
        if (reasons != 0) _freeze(collateral.pledgeId, pledge, reasons, evidence.leaf);
        _checkLines(collateral.pledgeId, pledge, false);
    }

    /// @notice Anyone: freezes a pledge whose latest observation or price is older than
    /// its maximum data age (with no observation, the age counts from the opening).
    function flagStale(uint256 pledgeId) external {
        Pledge storage pledge = _active(pledgeId);
        uint256 observedAt = _observations[pledge.terms.receiptId].observedAt;
        if (observedAt < pledge.openedAt) observedAt = pledge.openedAt;
        uint256 dataAge = block.timestamp - observedAt;
        uint256 priceAge = block.timestamp - _quote(pledge).observedAt;
        uint8 reasons;
        if (dataAge > pledge.terms.maxDataAge) reasons |= FROZEN_STALE_DATA;
        if (priceAge > pledge.terms.maxDataAge) reasons |= FROZEN_STALE_PRICE;
        if (reasons == 0) revert PledgeRegistryNotStale(pledgeId, dataAge, priceAge, pledge.terms.maxDataAge);
        _freeze(pledgeId, pledge, reasons, bytes32(0));
    }

    /// @notice An auditor's finding freezes the pledge until the lender clears it.
    function freezeOnFinding(uint256 pledgeId, bytes32 finding) external onlyRole(AUDITOR_ROLE) {
        _freeze(pledgeId, _active(pledgeId), FROZEN_AUDIT_FINDING, finding);
    }

    /// @notice The lender lifts every freeze of its pledge.
    function clearFreeze(uint256 pledgeId) external {
        Pledge storage pledge = _lenderAction(pledgeId);
        uint8 cleared = pledge.frozen;
        if (cleared == 0) revert PledgeRegistryNotFrozen(pledgeId);
        pledge.frozen = 0;
        emit PledgeUnfrozen(pledgeId, cleared);
    }

    // --- goods ------------------------------------------------------------------------------

    /// @notice The custodian adds goods to a pledged receipt (any mode, even frozen).
    function addGoods(uint256 pledgeId, uint64 quantity, bytes32[] calldata keys, bytes32 ref) external {
        (Pledge storage pledge,) = _custodianAction(pledgeId);
        if (quantity == 0) revert PledgeRegistryZeroAmount();
        emit GoodsAdded(pledgeId, quantity, ref);
        receipts.adjustPledged(pledge.terms.receiptId, quantity, 0, keys, new bytes32[](0), ReceiptRegistry.Change.Added, ref);
        _checkLines(pledgeId, pledge, false);
    }

    /// @notice Dynamic mode: the custodian swaps goods out for at least as many others of
    /// the receipt's asset class (like for like). A swap never takes goods out on balance:
    /// that is a release, which the lender instructs. The result must stay above the
    /// minimum and within the pledge rate.
    function swap(
        uint256 pledgeId,
        uint64 quantityOut,
        bytes32[] calldata keysOut,
        uint64 quantityIn,
        bytes32[] calldata keysIn,
        bytes32 ref
    ) external {
        (Pledge storage pledge, uint64 booked) = _custodianAction(pledgeId);
        if (pledge.terms.mode != Mode.Dynamic) revert PledgeRegistryNotDynamic(pledgeId);
        _requireNotFrozen(pledgeId, pledge);
        if (quantityOut == 0 || quantityIn < quantityOut) {
            revert PledgeRegistrySwapReducesGoods(pledgeId, quantityOut, quantityIn);
        }
        Valuation memory after_ = _valuation(pledge, booked + (quantityIn - quantityOut), true);
        if (!_aboveMinimum(pledge, after_)) revert PledgeRegistryBelowMinimum(pledgeId, after_.quantity, after_.goodsValue);
        if (!_withinRate(pledge, after_)) {
            revert PledgeRegistryLtvExceeded(pledgeId, after_.ltvBps, pledge.terms.pledgeRateBps);
        }
        emit GoodsSwapped(pledgeId, quantityOut, quantityIn, ref);
        receipts.adjustPledged(
            pledge.terms.receiptId, quantityIn, quantityOut, keysIn, keysOut, ReceiptRegistry.Change.SwappedIn, ref
        );
        _checkLines(pledgeId, pledge, false);
    }

    // --- release (dual control: the lender instructs, the custodian executes) ------------------

    /// @notice The lender instructs a partial release of `quantity`, at most `releasableOf`.
    function instructRelease(uint256 pledgeId, uint64 quantity) external {
        Pledge storage pledge = _lenderAction(pledgeId);
        _requireNotFrozen(pledgeId, pledge);
        _requireReleasable(pledgeId, pledge, _booked(pledge), quantity);
        pledge.releaseQuantity = quantity;
        pledge.releaseAll = false;
        emit ReleaseInstructed(pledgeId, quantity, false);
    }

    /// @notice The lender instructs the release of the whole pledge; the loan must be repaid.
    function instructFullRelease(uint256 pledgeId) external {
        Pledge storage pledge = _lenderAction(pledgeId);
        _requireNotFrozen(pledgeId, pledge);
        if (pledge.outstanding != 0) revert PledgeRegistryOutstanding(pledgeId, pledge.outstanding);
        pledge.releaseQuantity = 0;
        pledge.releaseAll = true;
        emit ReleaseInstructed(pledgeId, 0, true);
    }

    /// @notice The custodian executes the pending instruction, checked again against the
    /// rules as they stand now. `keysOut` are the identifiers of the goods that leave.
    function executeRelease(uint256 pledgeId, bytes32[] calldata keysOut, bytes32 ref) external {
        (Pledge storage pledge, uint64 booked) = _custodianAction(pledgeId);
        _requireNotFrozen(pledgeId, pledge);
        if (pledge.releaseAll) {
            if (pledge.outstanding != 0) revert PledgeRegistryOutstanding(pledgeId, pledge.outstanding);
            uint256 marginReturned = pledge.margin;
            pledge.releaseAll = false;
            pledge.margin = 0;
            pledge.callDeadline = 0;
            pledge.status = Status.Released;
            emit PledgeReleased(pledgeId, marginReturned, ref);
            receipts.unlock(pledge.terms.receiptId);
            return;
        }
        uint64 quantity = pledge.releaseQuantity;
        if (quantity == 0) revert PledgeRegistryNoInstruction(pledgeId);
        uint256 price = _requireReleasable(pledgeId, pledge, booked, quantity);
        uint256 creditUsed;
        if (pledge.terms.mode == Mode.Static) {
            creditUsed = Math.ceilDiv(uint256(quantity) * price, _priceScale);
            pledge.releaseCredit -= creditUsed;
        }
        pledge.releaseQuantity = 0;
        emit GoodsReleased(pledgeId, quantity, creditUsed, ref);
        receipts.adjustPledged(
            pledge.terms.receiptId, 0, quantity, new bytes32[](0), keysOut, ReceiptRegistry.Change.Released, ref
        );
    }

    // --- liquidation ------------------------------------------------------------------------

    /// @notice The lender liquidates: allowed at or past the liquidation line, after a
    /// margin call left uncured past its deadline, or on default (outstanding after
    /// maturity). Margin, then proceeds, pay the outstanding; the receipt goes to `buyer`.
    function liquidate(uint256 pledgeId, address buyer, uint256 proceeds, bytes32 ref) external {
        Pledge storage pledge = _lenderAction(pledgeId);
        if (buyer == address(0)) revert PledgeRegistryZeroBuyer();
        Liquidation memory outcome;
        outcome.ground = _liquidationGround(pledgeId, pledge);
        outcome.proceeds = proceeds;
        uint256 outstanding = pledge.outstanding;
        outcome.marginApplied = Math.min(pledge.margin, outstanding);
        outstanding -= outcome.marginApplied;
        outcome.proceedsApplied = Math.min(proceeds, outstanding);
        outstanding -= outcome.proceedsApplied;
        outcome.surplus = proceeds - outcome.proceedsApplied + pledge.margin - outcome.marginApplied;
        outcome.shortfall = outstanding;
        pledge.repaid += outcome.marginApplied + outcome.proceedsApplied;
        pledge.outstanding = outstanding;
        pledge.margin = 0;
        pledge.callDeadline = 0;
        pledge.releaseQuantity = 0;
        pledge.releaseAll = false;
        pledge.status = Status.Liquidated;
        emit PledgeLiquidated(pledgeId, buyer, outcome, ref);
        receipts.seize(pledge.terms.receiptId, buyer);
    }

    // --- views --------------------------------------------------------------------------------

    function pledgeOf(uint256 pledgeId) external view returns (Pledge memory) {
        return _known(pledgeId);
    }

    /// @notice The pledge's valuation now; price 0 if no price was reported.
    function valuationOf(uint256 pledgeId) external view returns (Valuation memory) {
        Pledge storage pledge = _known(pledgeId);
        return _valuation(pledge, _booked(pledge), false);
    }

    /// @notice The most the lender may instruct (and the custodian release) now.
    function releasableOf(uint256 pledgeId) external view returns (uint64) {
        Pledge storage pledge = _known(pledgeId);
        if (pledge.status != Status.Active || pledge.frozen != 0) return 0;
        (uint64 allowed,) = _releasable(pledge, _booked(pledge));
        return allowed;
    }

    function observationOf(uint256 receiptId) external view returns (Observation memory) {
        return _observations[receiptId];
    }

    function pledgeRateOf(address lender, bytes32 assetClass) external view returns (uint16) {
        return _rates[lender][assetClass];
    }

    function isEvidenceUsed(bytes32 leaf) external view returns (bool) {
        return _evidenceUsed[leaf];
    }

    function hasConsented(address borrower, bytes32 digest) external view returns (bool) {
        return _consents[borrower][digest];
    }

    function lastPledgeId() external view returns (uint256) {
        return _lastId;
    }

    /// @notice The EIP-712 digest a borrower signs (or passes to `consent`).
    function consentDigest(Terms calldata terms, uint256 nonce, uint64 deadline) public view returns (bytes32) {
        bytes32 termsHash = keccak256(abi.encode(TERMS_TYPEHASH, terms));
        return _hashTypedDataV4(keccak256(abi.encode(CONSENT_TYPEHASH, termsHash, nonce, deadline)));
    }

    // --- internals ----------------------------------------------------------------------------

    function _known(uint256 pledgeId) private view returns (Pledge storage pledge) {
        pledge = _pledges[pledgeId];
        if (pledge.status == Status.None) revert PledgeRegistryUnknownPledge(pledgeId);
    }

    function _active(uint256 pledgeId) private view returns (Pledge storage pledge) {
        pledge = _known(pledgeId);
        if (pledge.status != Status.Active) revert PledgeRegistryNotActive(pledgeId, pledge.status);
    }

    function _lenderAction(uint256 pledgeId) private view returns (Pledge storage pledge) {
        pledge = _active(pledgeId);
        if (pledge.terms.lender != msg.sender || !hasRole(LENDER_ROLE, msg.sender)) {
            revert PledgeRegistryNotLender(pledgeId, pledge.terms.lender, msg.sender);
        }
    }

    /// @dev Also returns the receipt's booked quantity, read in the same call.
    function _custodianAction(uint256 pledgeId) private view returns (Pledge storage pledge, uint64 booked) {
        pledge = _active(pledgeId);
        ReceiptRegistry.Collateral memory collateral = receipts.collateralOf(pledge.terms.receiptId);
        if (collateral.custodian != msg.sender || !receipts.hasRole(receipts.CUSTODIAN_ROLE(), msg.sender)) {
            revert PledgeRegistryNotCustodian(pledgeId, collateral.custodian, msg.sender);
        }
        booked = collateral.quantity;
    }

    function _requireNotFrozen(uint256 pledgeId, Pledge storage pledge) private view {
        if (pledge.frozen != 0) revert PledgeRegistryFrozen(pledgeId, pledge.frozen);
    }

    function _validateTerms(Terms calldata terms, bytes32 assetClass) private view {
        uint16 classRate = _rates[terms.lender][assetClass];
        if (classRate == 0) revert PledgeRegistryAssetClassNotAccepted(terms.lender, assetClass);
        if (terms.pledgeRateBps == 0 || terms.pledgeRateBps > classRate) {
            revert PledgeRegistryInvalidTerms("pledge rate must be 1..the lender's rate for the asset class");
        }
        if (terms.warningLtvBps <= terms.pledgeRateBps || terms.liquidationLtvBps <= terms.warningLtvBps) {
            revert PledgeRegistryInvalidTerms("lines must rise: pledge rate < warning < liquidation");
        }
        if (terms.liquidationLtvBps > BPS) revert PledgeRegistryInvalidTerms("liquidation line above 100%");
        if (terms.principal == 0) revert PledgeRegistryInvalidTerms("zero principal");
        if (terms.payee == address(0)) revert PledgeRegistryInvalidTerms("zero payee");
        if (terms.currency == bytes32(0)) revert PledgeRegistryInvalidTerms("no currency");
        if (terms.maxDataAge == 0) revert PledgeRegistryInvalidTerms("zero maximum data age");
        if (terms.maturity <= block.timestamp) revert PledgeRegistryInvalidTerms("maturity in the past");
    }

    function _checkConsent(address borrower, bytes32 digest, bytes calldata signature) private {
        if (signature.length == 0) {
            if (!_consents[borrower][digest]) revert PledgeRegistryNoConsent(borrower, digest);
            delete _consents[borrower][digest];
            return;
        }
        (address signer, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, signature);
        if (error != ECDSA.RecoverError.NoError || signer != borrower) {
            revert PledgeRegistryNoConsent(borrower, digest);
        }
    }

    /// @dev Checks the cited evidence is anchored, unused and covers the fact's time; marks it used.
    function _useEvidence(Evidence calldata evidence, uint64 observedAt) private {
        if (_evidenceUsed[evidence.leaf]) revert PledgeRegistryEvidenceReplayed(evidence.leaf);
        if (!anchors.includes(evidence.streamId, evidence.seq, evidence.leaf, evidence.leafIndex, evidence.siblings)) {
            revert PledgeRegistryEvidenceNotAnchored(evidence.streamId, evidence.seq, evidence.leaf);
        }
        AnchorRegistry.Batch memory batch = anchors.batchOf(evidence.streamId, evidence.seq);
        if (observedAt < batch.firstEventTime / 1000 || observedAt > batch.lastEventTime / 1000) {
            revert PledgeRegistryEvidenceOutsideBatch(observedAt, batch.firstEventTime, batch.lastEventTime);
        }
        _evidenceUsed[evidence.leaf] = true;
    }

    function _freeze(uint256 pledgeId, Pledge storage pledge, uint8 reasons, bytes32 ref) private {
        uint8 added = reasons & ~pledge.frozen;
        if (added == 0) return;
        uint8 frozen = pledge.frozen | added;
        pledge.frozen = frozen;
        emit PledgeFrozen(pledgeId, added, frozen, ref);
    }

    /// @dev The one place margin calls open and close. Without a price there is nothing
    /// to judge: `strict` reverts, otherwise (a repayment must never be blocked) it skips.
    function _checkLines(uint256 pledgeId, Pledge storage pledge, bool strict) private {
        Valuation memory valuation = _valuation(pledge, _booked(pledge), strict);
        if (valuation.price == 0) return;
        bool atWarning = pledge.outstanding * BPS >= uint256(pledge.terms.warningLtvBps) * valuation.value
            && pledge.outstanding != 0;
        if (atWarning && pledge.callDeadline == 0) {
            uint64 deadline = uint64(block.timestamp) + pledge.terms.curePeriod;
            pledge.callDeadline = deadline;
            emit MarginCallOpened(pledgeId, valuation.ltvBps, deadline);
        } else if (!atWarning && pledge.callDeadline != 0) {
            pledge.callDeadline = 0;
            emit MarginCallCured(pledgeId, valuation.ltvBps);
        }
    }

    function _liquidationGround(uint256 pledgeId, Pledge storage pledge) private view returns (Ground) {
        Valuation memory valuation = _valuation(pledge, _booked(pledge), false);
        uint256 owed = pledge.outstanding * BPS;
        if (valuation.price != 0 && pledge.outstanding != 0) {
            if (owed >= uint256(pledge.terms.liquidationLtvBps) * valuation.value) return Ground.LiquidationLine;
            if (
                pledge.callDeadline != 0 && block.timestamp > pledge.callDeadline
                    && owed >= uint256(pledge.terms.warningLtvBps) * valuation.value
            ) return Ground.UncuredMarginCall;
        }
        if (block.timestamp > pledge.terms.maturity && pledge.outstanding != 0) return Ground.Default;
        revert PledgeRegistryLiquidationNotAllowed(
            pledgeId, valuation.ltvBps, pledge.callDeadline, pledge.terms.maturity
        );
    }

    function _requireReleasable(uint256 pledgeId, Pledge storage pledge, uint64 booked, uint64 quantity)
        private
        view
        returns (uint256 price)
    {
        uint64 allowed;
        (allowed, price) = _releasable(pledge, booked);
        if (quantity == 0 || quantity > allowed) revert PledgeRegistryReleaseBeyondAllowance(pledgeId, allowed, quantity);
    }

    /// @dev The largest release that keeps: the remaining quantity at or above max(minQuantity, 1),
    /// the remaining goods value at or above minValue, LTV within the pledge rate, and (static
    /// mode) the released value within the credit repayments have freed. Exact in integers:
    /// releasing one unit more breaks one of these.
    function _releasable(Pledge storage pledge, uint256 booked) private view returns (uint64 allowed, uint256 price) {
        price = _quote(pledge).price;
        if (price == 0) return (0, 0);
        uint256 floor_ = pledge.terms.minQuantity > 0 ? pledge.terms.minQuantity : 1;
        if (pledge.outstanding != 0) {
            uint256 need = Math.ceilDiv(pledge.outstanding * BPS, pledge.terms.pledgeRateBps);
            if (need > pledge.margin) floor_ = Math.max(floor_, Math.ceilDiv((need - pledge.margin) * _priceScale, price));
        }
        if (pledge.terms.minValue != 0) floor_ = Math.max(floor_, Math.ceilDiv(pledge.terms.minValue * _priceScale, price));
        Observation storage observed = _observations[pledge.terms.receiptId];
        if (booked <= floor_ || (observed.observedAt != 0 && observed.quantity < floor_)) return (0, price);
        uint256 room = booked - floor_;
        if (pledge.terms.mode == Mode.Static) room = Math.min(room, pledge.releaseCredit * _priceScale / price);
        allowed = uint64(room);
    }

    function _aboveMinimum(Pledge storage pledge, Valuation memory valuation) private view returns (bool) {
        if (valuation.quantity < pledge.terms.minQuantity || valuation.quantity == 0) return false;
        return valuation.price == 0 || valuation.goodsValue >= pledge.terms.minValue;
    }

    function _withinRate(Pledge storage pledge, Valuation memory valuation) private view returns (bool) {
        return pledge.outstanding * BPS <= uint256(pledge.terms.pledgeRateBps) * valuation.value;
    }

    function _booked(Pledge storage pledge) private view returns (uint64) {
        return receipts.collateralOf(pledge.terms.receiptId).quantity;
    }

    function _quote(Pledge storage pledge) private view returns (PriceFeed.Quote memory) {
        return prices.quoteOf(pledge.assetClass, pledge.terms.currency);
    }

    /// @dev Values `booked` units of the pledge's goods; the observed count caps them.
    function _valuation(Pledge storage pledge, uint64 booked, bool requirePrice)
        private
        view
        returns (Valuation memory valuation)
    {
        PriceFeed.Quote memory quote = _quote(pledge);
        if (quote.price == 0 && requirePrice) {
            revert PledgeRegistryNoPrice(pledge.assetClass, pledge.terms.currency);
        }
        Observation storage observed = _observations[pledge.terms.receiptId];
        valuation.quantity = observed.observedAt != 0 && observed.quantity < booked ? observed.quantity : booked;
        valuation.price = quote.price;
        valuation.priceObservedAt = quote.observedAt;
        valuation.goodsValue = uint256(valuation.quantity) * quote.price / _priceScale;
        valuation.value = valuation.goodsValue + pledge.margin;
        valuation.outstanding = pledge.outstanding;
        valuation.ltvBps = _ltv(pledge.outstanding, valuation.value);
    }

    function _ltv(uint256 outstanding, uint256 value) private pure returns (uint256) {
        if (outstanding == 0) return 0;
        if (value == 0) return type(uint256).max;
        return Math.ceilDiv(outstanding * BPS, value);
    }
}
