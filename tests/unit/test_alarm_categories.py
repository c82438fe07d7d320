"""An alarm's category (what the alarms list and the dashboard group by) follows the
on-chain fact its rule calls for: a machine moved off-site is an unauthorized movement,
an unplugged tracker a tag removal, a silent sensor stale data, a performance covenant
a covenant breach, whichever monitor raised it."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from ledger.alarms import category_of
from oracles import crosscheck, energy, livestock, machines, telemetry, vehicles, warehouse

TABLES: dict[str, Mapping[str, tuple[str, str | None]]] = {
    "crosscheck": crosscheck.RULES,
    "energy": energy.RULES,
    "livestock": livestock.RULES,
    "machines": machines.RULES,
    "telemetry": telemetry.RULES,
    "vehicles": vehicles.RULES,
    "warehouse": warehouse.RULES,
}


@pytest.mark.parametrize("module", sorted(TABLES))
def test_a_rule_that_calls_for_a_fact_is_of_that_facts_category(module: str) -> None:
    for rule, (_, fact) in TABLES[module].items():
        if fact == "quantity":  # a count: a quantity below the minimum is a covenant breach
            assert category_of(rule, fact) == "covenant_breach", (module, rule)
        elif fact is not None:
            assert category_of(rule, fact) == fact, (module, rule)


def test_the_new_industries_rules_are_not_filed_as_sensor_noise() -> None:
    assert category_of("machine_moved", "unauthorized_movement") == "unauthorized_movement"
    assert category_of("certificate_out", "unauthorized_movement") == "unauthorized_movement"
    assert category_of("tracker_unplugged", "tag_removal") == "tag_removal"
    assert category_of("sensor_silent", "stale_data") == "stale_data"
    assert category_of("keys_out", None) == "sensor"
    assert category_of("below_minimum") == "covenant_breach"  # by its rule, fact or not
