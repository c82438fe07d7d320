// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title fourflow collateral prices
/// @notice Unit prices per (asset class, currency), reported by price oracles. The price
/// a pledge is valued at is the lower of the latest spot price and the average of the
/// last `WINDOW` reports: the common bank rule for pledged commodities.
/// @dev Prices are in micro minor units per unit of quantity (PRICE_SCALE = 1e6): steel
/// at 4.05 CNY/kg is 405 fen/kg, reported as 405_000_000. The average is kept as a running
/// sum over a ring of the last WINDOW reports, so a report and a read are O(1).
contract PriceFeed is AccessControl {
    /// @notice May report prices.
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    uint256 public constant PRICE_SCALE = 1e6;
    uint256 public constant WINDOW = 30;

    struct Series {
        uint128 spot;
        uint64 observedAt; // unix seconds of the latest report
        uint64 count; // reports so far
        uint256 sum; // sum of the last min(count, WINDOW) reports
    }

    /// @notice What a valuation uses.
    struct Quote {
        uint256 price; // min(spot, average)
        uint256 spot;
        uint256 average;
        uint64 observedAt;
        uint64 count;
    }

    mapping(bytes32 seriesId => Series) private _series;
    mapping(bytes32 seriesId => mapping(uint256 slot => uint128 price)) private _ring;

    event PriceReported(
        bytes32 indexed assetClass,
        bytes32 indexed currency,
        uint128 price,
        uint64 observedAt,
        uint256 average,
        bytes32 source
    );

    error PriceFeedZeroPrice(bytes32 assetClass, bytes32 currency);
    error PriceFeedNotNewer(bytes32 assetClass, bytes32 currency, uint64 latest, uint64 observedAt);
    error PriceFeedFromFuture(uint64 observedAt, uint256 blockTime);

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Reports the unit price of `assetClass` in `currency` observed at `observedAt`.
    /// @param source Hash of where the price came from (exchange settlement, quote document).
    function report(bytes32 assetClass, bytes32 currency, uint128 price, uint64 observedAt, bytes32 source)
        external
        onlyRole(ORACLE_ROLE)
    {
        if (price == 0) revert PriceFeedZeroPrice(assetClass, currency);
        if (observedAt > block.timestamp) revert PriceFeedFromFuture(observedAt, block.timestamp);
        bytes32 id = _seriesId(assetClass, currency);
        Series storage series = _series[id];
        if (observedAt <= series.observedAt) {
            revert PriceFeedNotNewer(assetClass, currency, series.observedAt, observedAt);
        }
        uint256 slot = series.count % WINDOW;
        uint256 sum = series.sum + price;
        if (series.count >= WINDOW) sum -= _ring[id][slot];
        _ring[id][slot] = price;
        series.spot = price;
        series.observedAt = observedAt;
        series.count += 1;
        series.sum = sum;
        emit PriceReported(assetClass, currency, price, observedAt, _average(series), source);
    }

    /// @notice The quote a valuation uses; all zero if nothing was reported.
    function quoteOf(bytes32 assetClass, bytes32 currency) external view returns (Quote memory quote) {
        Series storage series = _series[_seriesId(assetClass, currency)];
        if (series.count == 0) return quote;
        uint256 average = _average(series);
        quote = Quote(
            series.spot < average ? series.spot : average, series.spot, average, series.observedAt, series.count
        );
    }

    function _average(Series storage series) private view returns (uint256) {
        uint256 n = series.count < WINDOW ? series.count : WINDOW;
        return series.sum / n;
    }

    function _seriesId(bytes32 assetClass, bytes32 currency) private pure returns (bytes32) {
        return keccak256(abi.encode(assetClass, currency));
    }
}
