"""The dashboard's panels of the other industries (api/static/operations.js) in a real
chromium, against the real API served by uvicorn on loopback, over a simulated plant
and solar plant watched by the oracle (tests/operations_scene.py): a chart per daily
series with its unit on the axis, the latest figures, and the verdicts on the
borrower's declarations with the overstated one marked as a breach.

The auditor signs in by pasting a token (the form the page shows when there is no
wallet), signed in over HTTP with its real key. Screenshots:
test-artifacts/screenshots/<test name>.png.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect

from api.app import create_app
from api.settings import Settings
from api.siwe_client import sign_in
from tests.browser import SCREENSHOTS, save_screenshot
from tests.operations_scene import Operations, build_operations


@dataclass
class Site:
    url: str
    ops: Operations
    token: str

    def summary(self, asset: str) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.url}/v1/assets/{quote(asset, safe='')}/history",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        summary: dict[str, Any] = answer.json()["summary"]
        return summary


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import uvicorn

    path: Path = tmp_path_factory.mktemp("dashboard-operations") / "store.sqlite"
    with build_operations(f"sqlite:///{path}", ("plant", "solar")) as ops:
        app = create_app(ops.runtime, settings=Settings(auth_secret=bytes(range(32))))
        app.state.histories.catalog.catch_up()  # once, before the browser's reads
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, name="operations-test-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        with httpx.Client(base_url=url, timeout=30) as client:
            token = sign_in(client, ops.auditor)
        try:
            yield Site(url, ops, token)
        finally:
            server.should_exit = True
            thread.join(timeout=15)


@pytest.fixture
def tab(page: Page) -> Iterator[Page]:
    """The page; the test fails on any script error or CSP violation in it."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    yield page
    assert problems == []


def open_asset(tab: Page, site: Site, asset: str) -> None:
    tab.goto(f"{site.url}/#/assets/{quote(asset, safe='')}")
    tab.locator("#paste-token").fill(site.token)
    tab.locator("#use-token").click()
    expect(tab.locator("#asset-id")).to_have_text(asset)


def currency(tab: Page, minor: int, code: str) -> str:
    """``minor`` units of ``code`` (a two-decimal currency) as this browser's Intl shows it."""
    whole, cents = divmod(minor, 100)
    text: str = tab.evaluate(
        "([amount, code]) => new Intl.NumberFormat(undefined, {style: 'currency', currency: code})"
        ".format(amount)",
        [f"{whole}.{cents:02d}", code],
    )
    return text


def short(address: str) -> str:
    """An address as the dashboard shows it: 0x1234…abcd."""
    return f"{address[:6]}…{address[-4:]}"


def grouped(tab: Page, number: float) -> str:
    """``number`` with this browser's digit grouping."""
    text: str = tab.evaluate("n => new Intl.NumberFormat().format(n)", number)
    return text


def test_a_plant_shows_a_chart_per_series_with_its_unit_and_the_latest_figures(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    (plant,) = site.ops.subjects("plant")
    (expected,) = site.summary(plant)["operations"]["sites"]
    open_asset(tab, site, plant)
    panel = tab.locator('section.operations[data-industry="manufacturing"]')
    expect(panel).to_be_visible()
    expect(panel.locator("h2")).to_contain_text("Plant")
    expect(panel.locator('[data-field="days"]')).to_contain_text(
        f"{len(expected['days'])} closed days, the latest {expected['latest']['day']}"
    )
    # who recorded the series: the oracle's gateway, its address shortened, in full on hover
    gateway = site.ops.keys.submitters[0].address
    assert expected["recorded_by"] == gateway
    recorded_by = panel.locator('[data-field="recorded-by"]')
    expect(recorded_by).to_have_text(f"recorded by {short(gateway)}")
    expect(recorded_by.locator("code.address")).to_have_attribute("title", gateway)
    charts = panel.locator("svg.daily-chart")
    expect(charts).to_have_count(len(expected["series"]))
    for line in expected["series"]:
        figure = panel.locator(f'figure.daily[data-metric="{line["metric"]}"]')
        expect(figure.locator(".y-label")).to_have_text(line["unit"])
        expect(figure.locator(".x-label")).to_have_text("local day")
        expect(figure.locator("title").first).to_have_text(
            f"{line['label']} per day, in {line['unit']}"
        )
        known = [v for v in line["values"] if v is not None]
        expect(figure.locator("circle.point")).to_have_count(len(known))
        latest = panel.locator(f'dl.latest-figures dd[data-metric="{line["metric"]}"]')
        expect(latest).to_contain_text(line["unit"])
    utilization = next(s for s in expected["series"] if s["metric"] == "utilization_pct")
    value = utilization["latest"]
    expect(panel.locator('dd[data-metric="utilization_pct"]')).to_have_text(
        f"{grouped(tab, value)} %"
    )
    first_day = panel.locator('figure[data-metric="output"] circle.point').first
    expect(first_day).to_have_attribute("data-day", expected["days"][0])
    save_screenshot(tab, request)
    panel.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-panel.png"))


def test_revenue_is_charted_in_yuan_and_shown_as_money(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    (plant,) = site.ops.subjects("solar")
    (expected,) = site.summary(plant)["operations"]["sites"]
    revenue = next(s for s in expected["series"] if s["metric"] == "revenue_fen")
    assert (revenue["unit"], revenue["currency"]) == ("fen", "CNY")
    open_asset(tab, site, plant)
    panel = tab.locator('section.operations[data-industry="solar"]')
    figure = panel.locator('figure[data-metric="revenue_fen"]')
    expect(figure.locator(".y-label")).to_have_text("CNY")
    expect(panel.locator('dd[data-metric="revenue_fen"]')).to_have_text(
        currency(tab, revenue["latest"], "CNY")
    )
    # the axis is in yuan: its top tick is above the largest day's yuan, not its fen
    ticks = figure.locator(".y-axis text:not(.axis-label)").all_text_contents()
    top = max(float(t.replace(",", "").replace("\u202f", "").replace(" ", "")) for t in ticks)
    assert max(revenue["values"]) / 100 <= top < max(revenue["values"])
    expect(panel.locator('figure[data-metric="insolation_kwh_m2"] .y-label')).to_have_text("kWh/m²")
    save_screenshot(tab, request)
    panel.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-panel.png"))


def test_the_verdicts_mark_the_overstated_declaration_as_a_breach(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    (plant,) = site.ops.subjects("plant")
    checks = site.summary(plant)["operations"]["checks"]
    open_asset(tab, site, plant)
    panel = tab.locator("section.operations-checks")
    expect(panel).to_be_visible()
    expect(panel.locator('[data-field="check-summary"]')).to_have_text("✗ 1 declaration overstated")
    rows = panel.locator("tbody tr")
    expect(rows).to_have_count(len(checks))
    inflated = panel.locator('tr[data-declaration="decl-output-inflated"]')
    expect(inflated).to_have_class("breach")
    expect(inflated.locator(".badge")).to_have_text("overstated")
    expect(inflated.locator(".badge")).to_have_class("badge verdict verdict-breach")
    expected = next(c for c in checks if c["declaration"] == "decl-output-inflated")
    cells = inflated.locator("td")
    expect(cells.nth(3)).to_have_text(f"{grouped(tab, expected['declared'])} pieces")
    expect(cells.nth(4)).to_have_text(f"{grouped(tab, expected['observed'])} pieces")
    expect(cells.nth(5)).to_have_text(
        f"+{grouped(tab, expected['difference'])} pieces "
        f"(+{round(expected['difference_pct'], 1):g} %)"
    )
    assert expected["recorded_by"] == site.ops.keys.submitters[0].address
    expect(panel.locator("thead th").last).to_have_text("Recorded by")
    recorder = inflated.locator('td[data-field="recorded-by"] code.address')
    expect(recorder).to_have_text(short(expected["recorded_by"]))
    expect(recorder).to_have_attribute("title", expected["recorded_by"])
    honest = panel.locator('tr[data-declaration="decl-output-honest"]')
    expect(honest).not_to_have_class("breach")
    expect(honest.locator(".badge")).to_have_class("badge verdict verdict-ok")
    background = inflated.locator("td").first.evaluate(
        "cell => getComputedStyle(cell).backgroundColor"
    )
    assert background != honest.locator("td").first.evaluate(
        "cell => getComputedStyle(cell).backgroundColor"
    )
    save_screenshot(tab, request)
    panel.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-panel.png"))


def test_each_asset_shows_its_own_sites_panel_only(tab: Page, site: Site) -> None:
    (plant,) = site.ops.subjects("plant")
    open_asset(tab, site, plant)
    expect(tab.locator("section.operations")).to_have_count(1)
    (solar_plant,) = site.ops.subjects("solar")
    tab.goto(f"{site.url}/#/assets/{quote(solar_plant, safe='')}")
    expect(tab.locator("#asset-id")).to_have_text(solar_plant)
    expect(tab.locator('section.operations[data-industry="manufacturing"]')).to_have_count(0)
    expect(tab.locator('section.operations[data-industry="solar"]')).to_have_count(1)
