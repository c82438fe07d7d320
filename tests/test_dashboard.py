"""The lender dashboard (api/static, served at /) in a real chromium, against the real API
served by uvicorn on loopback, over a watched warehouse and a live pledge on a real anvil.

The scene: anvil, the four contracts, two simulated days of a warehouse under a pledge
(RFID counts, climate and door sensors, EPCIS custody, a theft that freezes the pledge),
anchored and indexed. The verify buttons ask anvil directly from the browser.

The one fake is the wallet: a headless browser has no wallet extension to drive, so an
EIP-1193 provider is injected at ``window.ethereum`` whose ``personal_sign`` calls back
into this process, where eth-account signs with the party's real key. Everything after
the signature (nonce, EIP-4361 message, token, reads) is the real path.

Screenshots: test-artifacts/screenshots/<test name>.png, one per test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from playwright.sync_api import Locator, Page, Route, expect

from api.app import create_app
from api.oracle_scene import SceneResult, run_oracle_scene
from api.routes.dashboard import CONTENT_SECURITY_POLICY
from api.settings import Settings
from api.siwe_client import compose_sign_in, sign_in
from ledger.alarms import sign_change
from ledger.chain import Chain, new_account
from ledger.collateral import deploy_collateral
from ledger.indexer import Indexer
from ledger.runtime import Runtime
from tests.browser import save_screenshot
from tests.conftest import AnvilNode, free_port

pytestmark = pytest.mark.anvil

FLOWS = ["information", "logistics", "commercial", "capital"]
WALLET = """
// A test wallet (see the module docstring): requests go to the test process.
window.ethereum = {
  request: ({ method, params }) => window.fourflowTestWallet(method, params ?? []),
  on() {},
  removeListener() {},
};
"""


@dataclass
class Site:
    url: str
    rpc_url: str
    runtime: Runtime
    result: SceneResult
    accounts: dict[str, LocalAccount]
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def pledge_id(self) -> int:
        return self.result.pledge_id

    def token(self, who: str) -> str:
        if who not in self._tokens:
            with httpx.Client(base_url=self.url, timeout=30) as client:
                self._tokens[who] = sign_in(client, self.accounts[who])
        return self._tokens[who]

    def get(self, path: str, who: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token(who)}"}
        answer = httpx.get(self.url + path, headers=headers, params=params, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def history(self, path: str, who: str = "lender", **params: Any) -> list[dict[str, Any]]:
        """Every entry of a timeline, page by page, as the API gives it."""
        entries: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 500, "summary": "false", **params}
        while True:
            body = self.get(path, who, **query)
            entries += body["entries"]
            if body["next_cursor"] is None:
                return entries
            query["cursor"] = body["next_cursor"]


def _quiet(*_: Any, **__: Any) -> None:
    pass


@pytest.fixture(scope="module")
def site(anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import uvicorn

    db = tmp_path_factory.mktemp("dashboard") / "store.sqlite"
    runtime, keys = Runtime.dev(db_url=f"sqlite:///{db}", chain=Chain.connect(anvil.url))
    contracts, deployment = deploy_collateral(
        runtime.registry, runtime.deployment, admin=keys.admin
    )
    runtime.deployment = deployment
    # anvil's clock is the wall clock, which the scene needs (its days end before now)
    result = run_oracle_scene(
        runtime, keys, contracts, kind="warehouse", days=2, seed=11, say=_quiet
    )
    Indexer(runtime.store, runtime.chain, deployment).catch_up()
    accounts = {
        "lender": result.parties["bank"],
        "borrower": result.parties["owner"],
        "outsider": new_account(),
    }
    app = create_app(runtime, settings=Settings(auth_secret=bytes(range(32))))
    # Catalog the new events once before the browser's concurrent reads: two first reads
    # racing each other both insert the catalog's cursor row (ledger/history.py,
    # Catalog.catch_up), and one fails with a UNIQUE constraint error (503). Reported.
    app.state.histories.catalog.catch_up()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard-test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Site(f"http://127.0.0.1:{port}", anvil.url, runtime, result, accounts)
    server.should_exit = True
    thread.join(timeout=15)
    runtime.close()


# --- the browser side -----------------------------------------------------------------


@pytest.fixture
def tab(page: Page) -> Iterator[Page]:
    """The page; the test fails on any script error or CSP violation in it."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))

    def on_console(message: Any) -> None:
        # a 403 or 401 answer is logged as "Failed to load resource": expected in some tests
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    yield page
    assert problems == []


def give_wallet(
    tab: Page,
    account: LocalAccount,
    calls: list[str] | None = None,
    signed_texts: list[str] | None = None,
) -> None:
    """An EIP-1193 provider at window.ethereum that signs with ``account``'s key here;
    ``calls`` collects the methods asked, ``signed_texts`` what it signed."""

    def wallet(method: str, params: list[Any]) -> Any:
        if calls is not None:
            calls.append(method)
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [account.address.lower()]  # as many wallets answer: the page checksums it
        if method == "personal_sign":
            data, address = params
            assert address == account.address, "the page must name the EIP-55 address"
            if signed_texts is not None:
                signed_texts.append(bytes.fromhex(data.removeprefix("0x")).decode("utf-8"))
            signed = account.sign_message(encode_defunct(hexstr=data))
            return signed.signature.to_0x_hex()
        raise RuntimeError(f"the test wallet does not do {method}")

    tab.expose_function("fourflowTestWallet", wallet)
    tab.add_init_script(WALLET)


def sign_in_as(tab: Page, site: Site, who: str, fragment: str = "") -> None:
    give_wallet(tab, site.accounts[who])
    tab.goto(f"{site.url}/{fragment}")
    tab.get_by_role("button", name="Sign in with your wallet").click()
    expect(tab.locator("#session")).to_be_visible()


def open_pledge(tab: Page, site: Site) -> None:
    sign_in_as(tab, site, "lender", f"#/pledges/{site.pledge_id}")
    expect(tab.locator("#timeline > li").first).to_be_visible()


def currency(tab: Page, minor: int, code: str) -> str:
    """``minor`` units (cents, fen) of ``code``, a two-decimal currency, as this browser's
    Intl formats the decimal amount."""
    whole, cents = divmod(minor, 100)
    decimal = f"{whole}.{cents:02d}"
    text: str = tab.evaluate(
        "([amount, code]) => new Intl.NumberFormat(undefined, {style: 'currency', currency: code})"
        ".format(amount)",
        [decimal, code],
    )
    return text


def show_flows(tab: Page, *flows: str) -> None:
    """Switch the timeline's other flows off, and wait for the last answer to show."""
    for flow in FLOWS:
        if flow not in flows:
            chip = tab.locator(f'.chips button[data-flow="{flow}"]')
            chip.click()
            expect(chip).to_have_attribute("aria-pressed", "false")
    others = "".join(f':not([data-flow="{flow}"])' for flow in flows)
    expect(tab.locator(f"#timeline > li{others}")).to_have_count(0)
    expect(tab.locator("#timeline-count")).to_contain_text("all loaded")


def card_field(tab: Page, card: str, name: str) -> Locator:
    return tab.locator(f'[data-card="{card}"] [data-field="{name}"]')


# --- the server side ------------------------------------------------------------------


def test_the_page_the_chain_facts_and_the_static_files_are_served(site: Site) -> None:
    home = httpx.get(site.url + "/", timeout=30)
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert home.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
    assert policy["connect-src"] == "'self' http: https:"
    assert home.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/app.js">' in home.text

    for name, kind in [
        ("app.js", "text/javascript"),
        ("verify.js", "text/javascript"),
        ("verify-log.js", "text/javascript"),
        ("keccak.js", "text/javascript"),
        ("style.css", "text/css"),
    ]:
        answer = httpx.get(f"{site.url}/static/{name}", timeout=30)
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith(kind), name
    copy = httpx.get(f"{site.url}/static/index.html", timeout=30)  # the page by another name
    assert copy.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert httpx.get(f"{site.url}/static/nothing.js", timeout=30).status_code == 404
    assert httpx.get(f"{site.url}/static/../app.py", timeout=30).status_code == 404

    chain = httpx.get(f"{site.url}/v1/chain", timeout=30)  # public: no token
    assert chain.status_code == 200
    deployment = site.runtime.deployment
    assert chain.json() == {
        "chain_id": 31337,
        "rpc_url": site.rpc_url,
        "contracts": {
            "AnchorRegistry": to_checksum_address(deployment.anchor_registry),
            "ReceiptRegistry": to_checksum_address(deployment.receipt_registry or ""),
            "PriceFeed": to_checksum_address(deployment.price_feed or ""),
            "PledgeRegistry": to_checksum_address(deployment.pledge_registry or ""),
        },
    }


# --- signing in -----------------------------------------------------------------------


def test_a_wallet_signs_in_and_the_pledge_list_shows_status_money_and_ltv(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    calls: list[str] = []
    give_wallet(tab, site.accounts["lender"], calls)
    tab.goto(site.url + "/")
    expect(tab.locator("#no-wallet")).to_have_count(0)
    tab.get_by_role("button", name="Sign in with your wallet").click()
    expect(tab.locator("#session")).to_be_visible()
    assert calls == ["eth_requestAccounts", "personal_sign"]

    bank = site.accounts["lender"]
    session = json.loads(tab.evaluate("() => sessionStorage.getItem('fourflow.session')"))
    assert session["address"] == bank.address and session["roles"] == ["lender"]
    expect(tab.locator("#session-who .address")).to_have_attribute("title", bank.address)
    expect(tab.locator("#session-who [data-field=roles]")).to_have_text("lender")
    expect(tab.locator("#session-who time")).to_have_attribute(
        "datetime",
        datetime.fromisoformat(session["expires_at"])
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
    )

    [pledge] = site.get("/v1/pledges", "lender")["pledges"]
    open_alarms = [
        a
        for a in site.get("/v1/alarms", "lender", state="open")["alarms"]
        if a["pledge_id"] == pledge["pledge_id"]
    ]
    row = tab.locator(f'#pledges tbody tr[data-pledge-id="{site.pledge_id}"]')
    expect(row).to_have_count(1)
    expect(tab.locator("#pledges tbody tr")).to_have_count(1)
    status = row.locator("[data-field=status] .badge")
    assert pledge["frozen"] == ["unauthorized_movement", "tag_removed"]
    expect(status).to_have_text(["active", "frozen: unauthorized movement", "frozen: tag removed"])
    ltv_bps = pledge["valuation"]["ltv_bps"]
    assert 0 < ltv_bps < pledge["warning_ltv_bps"]
    expect(row.locator(".ltv")).to_have_attribute("data-ltv-bps", str(ltv_bps))
    expect(row.locator(".ltv")).to_have_class("ltv ok")
    expect(row.locator(".ltv-value")).to_have_text(f"{ltv_bps / 100:.2f} %")
    expect(row.locator(".ltv-lines")).to_have_text("warning 70.00 % · liquidation 85.00 %")
    expect(row.locator("[data-field=money]")).to_have_text(
        f"{currency(tab, pledge['outstanding'], 'CNY')} / {currency(tab, pledge['principal'], 'CNY')}"
    )
    assert len(open_alarms) > 0
    expect(row.locator("[data-field=alarms]")).to_have_text(str(len(open_alarms)))
    expect(tab.locator("#alarm-count")).to_have_text(str(len(open_alarms)))
    save_screenshot(tab, request)

    tab.get_by_role("button", name="Sign out").click()
    expect(tab.get_by_role("button", name="Sign in with your wallet")).to_be_visible()
    assert tab.evaluate("() => sessionStorage.getItem('fourflow.session')") is None
    expect(tab.locator("#nav")).to_be_hidden()


def test_without_a_wallet_a_pasted_signature_or_token_signs_in(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    bank = site.accounts["lender"]
    tab.goto(site.url + "/")
    expect(tab.locator("#no-wallet")).to_contain_text(
        "No Ethereum wallet was found in this browser"
    )
    expect(tab.get_by_role("button", name="Sign in with your wallet")).to_have_count(0)

    # a mixed-case address with a broken checksum is refused before anything is asked
    broken = "0x" + bank.address[2:].swapcase()
    tab.get_by_label("1. Your address").fill(broken)
    tab.get_by_role("button", name="Prepare the message").click()
    expect(tab.locator("#sign-in-status")).to_contain_text("not an Ethereum address")

    tab.get_by_label("1. Your address").fill(bank.address.lower())
    tab.get_by_role("button", name="Prepare the message").click()
    message_box = tab.locator("#manual-message")
    expect(message_box).to_be_visible()
    message = message_box.input_value()
    save_screenshot(tab, request)

    # the page's EIP-4361 text is exactly what the Python client composes for the offer
    lines = dict(line.split(": ", 1) for line in message.splitlines() if ": " in line)
    host = site.url.removeprefix("http://")
    offer = {
        "domain": host,
        "uri": f"{site.url}/",
        "chain_id": 31337,
        "nonce": lines["Nonce"],
        "statement": "Sign in to fourflow to read the histories and proofs you are entitled to.",
        "version": "1",
    }
    issued = datetime.fromisoformat(lines["Issued At"])
    expected = compose_sign_in(offer, account=bank, issued_at=issued)
    assert message == expected.message

    tab.get_by_label("3. Paste the signature").fill(expected.signature)
    tab.get_by_role("button", name="Sign in", exact=True).click()
    expect(tab.locator("#session-who .address")).to_have_attribute("title", bank.address)
    expect(tab.locator("#pledges tbody tr")).to_have_count(1)

    tab.get_by_role("button", name="Sign out").click()
    tab.locator("details.other-ways > summary").is_visible()
    tab.get_by_label("Token").fill("ff1.not-a-token")
    tab.get_by_role("button", name="Use this token").click()
    expect(tab.locator("#sign-in-status")).to_contain_text("Refused:")
    tab.get_by_label("Token").fill(site.token("borrower"))
    tab.get_by_role("button", name="Use this token").click()
    expect(tab.locator("#session-who .address")).to_have_attribute(
        "title", site.accounts["borrower"].address
    )
    expect(tab.locator("#session-who [data-field=roles]")).to_have_text("no role")
    expect(tab.locator("#pledges tbody tr")).to_have_count(1)  # the borrower's own pledge


def test_keccak_and_eip55_in_the_page_match_eth_utils(tab: Page, site: Site) -> None:
    tab.goto(site.url + "/")
    inputs = [b"", b"abc", bytes(range(256)), b"a" * 135, b"a" * 136, b"a" * 137]
    addresses = [new_account().address.lower() for _ in range(8)]
    got = tab.evaluate(
        """async ([inputs, addresses]) => {
            const k = await import("/static/keccak.js");
            const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
            const bytes = (h) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
            return {
                hashes: inputs.map((h) => hex(k.keccak256(bytes(h)))),
                checksums: addresses.map(k.toChecksumAddress),
                valid: addresses.map((a) => k.isValidAddress(a)),
            };
        }""",
        [[i.hex() for i in inputs], addresses],
    )
    assert got["hashes"] == [keccak(i).hex() for i in inputs]
    assert got["checksums"] == [to_checksum_address(a) for a in addresses]
    assert got["valid"] == [True] * len(addresses)


# --- a pledge -------------------------------------------------------------------------


def test_the_pledge_view_answers_the_lenders_questions_with_a_chart(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    sign_in_as(tab, site, "lender")
    tab.locator(f'#pledges tbody tr[data-pledge-id="{site.pledge_id}"] td').nth(
        2
    ).click()  # the row
    expect(tab).to_have_url(f"{site.url}/#/pledges/{site.pledge_id}")
    expect(tab.locator("#timeline > li").first).to_be_visible()

    summary = site.get(f"/v1/pledges/{site.pledge_id}/history", "lender", limit=1)["summary"]
    quantity, [money] = summary["quantity"], summary["money"]
    unit = quantity["unit"]
    expect(card_field(tab, "quantity", "latest")).to_have_text(
        f"{quantity['latest']['quantity']} {unit}"
    )
    expect(card_field(tab, "quantity", "minimum")).to_have_text(f"{quantity['minimum']} {unit}")
    expect(card_field(tab, "quantity", "booked")).to_have_text(f"{quantity['booked']} {unit}")
    assert quantity["below_minimum"] is False
    expect(card_field(tab, "quantity", "against-minimum")).to_have_text(
        f"✓ at or above the minimum of {quantity['minimum']}"
    )
    on_chain = quantity["latest_on_chain"]
    expect(card_field(tab, "quantity", "on-chain")).to_have_text(
        f"{on_chain['quantity']} {unit} (block {on_chain['block_number']})"
    )
    for name in ("principal", "repaid", "outstanding"):
        expect(card_field(tab, "money", name)).to_have_text(currency(tab, money[name], "CNY"))
    assert money["all_to_designated_payee"] is True
    expect(card_field(tab, "money", "disbursed")).to_have_text(
        f"{currency(tab, money['disbursed'], 'CNY')} ✓ all to the designated payee"
    )
    expect(card_field(tab, "money", "payee").locator("code")).to_have_attribute(
        "title", money["payee"]
    )
    [receipt] = summary["ownership"]["receipts"]
    expect(card_field(tab, "ownership", "owner").locator("code")).to_have_attribute(
        "title", receipt["owner"]
    )
    expect(card_field(tab, "ownership", "lien")).to_have_text("✓ active")
    expect(card_field(tab, "ownership", "lender").locator("code")).to_have_attribute(
        "title", site.accounts["lender"].address
    )
    held = [g for g in summary["custody"]["now"] if g["status"] == "held"]
    expect(tab.locator('[data-card="custody"] li[data-status="held"]')).to_contain_text(
        f"{held[0]['assets']} {unit} held"
    )
    # the alarm counts are the alarm list's, which has the chain's freezes as well
    alarms = site.get("/v1/alarms", "lender", pledge_id=site.pledge_id)["alarms"]
    for state in ("open", "acknowledged", "cleared"):
        expect(card_field(tab, "alarms", state)).to_have_text(
            str(sum(1 for a in alarms if a["state"] == state))
        )

    # the chart: one point per count, the minimum dashed, points placed to scale
    trend = quantity["trend"]
    chart = tab.locator("#quantity-chart")
    expect(chart.locator("circle.point")).to_have_count(len(trend))
    minimum_line = chart.locator("line.minimum")
    expect(minimum_line).to_have_attribute("stroke-dasharray", "6 4")
    expect(chart.locator("text.minimum-label")).to_have_text(f"minimum {quantity['minimum']}")
    minimum_y = float(minimum_line.get_attribute("y1") or "nan")
    points = chart.locator("circle.point")
    for i, count in enumerate(trend):
        circle = points.nth(i)
        assert circle.get_attribute("data-quantity") == str(count["quantity"])
        above = float(circle.get_attribute("cy") or "nan") < minimum_y  # SVG y grows downwards
        assert above == (count["quantity"] > quantity["minimum"]), count
    below = sum(1 for count in trend if count["quantity"] < quantity["minimum"])
    expect(chart.locator("circle.point.below")).to_have_count(below)
    expect(chart.locator("desc")).to_contain_text(f"{len(trend)} counts")
    show_flows(tab, "commercial", "capital")  # a page of readable length for the screenshot
    save_screenshot(tab, request)


def test_the_timeline_merges_four_flows_pages_and_filters(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    path = f"/v1/pledges/{site.pledge_id}/history"
    everything = site.history(path)
    assert {e["flow"] for e in everything} == set(FLOWS)
    open_pledge(tab, site)
    items = tab.locator("#timeline > li")
    expect(items).to_have_count(100)
    more = tab.get_by_role("button", name="Load more")
    for pages in range(2, 20):
        more.click()
        expect(items).to_have_count(min(100 * pages, len(everything)))
        if 100 * pages >= len(everything):
            break
    expect(more).to_be_hidden()
    expect(tab.locator("#timeline-count")).to_have_text(f"{len(everything)} entries, all loaded")
    shown = items.evaluate_all(
        "(items) => items.map((li) => [li.dataset.entryId, li.dataset.flow])"
    )
    assert shown == [[e["id"], e["flow"]] for e in everything]

    show_flows(tab, "capital")
    capital = [e for e in everything if e["flow"] == "capital"]
    expect(items).to_have_count(len(capital))
    assert items.evaluate_all("(items) => items.map((li) => li.dataset.kind)") == [
        e["kind"] for e in capital
    ]
    expect(items.first.locator(".flow-badge")).to_have_text("Capital")
    save_screenshot(tab, request)


def rpc_calls(tab: Page, rpc_url: str) -> list[str]:
    """The JSON-RPC methods the page sends to the node, recorded as they go."""
    methods: list[str] = []

    def on_request(req: Any) -> None:
        if req.url.rstrip("/") == rpc_url and req.method == "POST":
            methods.append(json.loads(req.post_data or "{}").get("method", "?"))

    tab.on("request", on_request)
    return methods


def verify_entry(entry: Locator) -> Locator:
    entry.get_by_role("button", name="Verify").click()
    result = entry.locator(".verify-result")
    expect(result).not_to_have_attribute("data-verdict", "running", timeout=30_000)
    return result


def test_verify_rechecks_merkle_and_chain_log_proofs_against_the_node(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    methods = rpc_calls(tab, site.rpc_url)
    open_pledge(tab, site)
    merkle = tab.locator('#timeline > li:has([data-proof="merkle"])').first
    result = verify_entry(merkle)
    expect(result).to_have_attribute("data-verdict", "ok")
    expect(result.locator(".verdict")).to_have_text(f"✓ Verified against {site.rpc_url}")
    steps = result.locator("ol.steps li")
    expect(steps).to_have_count(8)
    expect(steps.nth(3)).to_contain_text("✓ 4. leaf: leaf 0x")
    expect(steps.nth(6)).to_contain_text("✓ 7. root: root 0x")
    expect(result.locator("li.unchecked")).to_have_text(
        [
            "– 3. signature: not checked in the browser: run fourflow verify",
            "– 8. submitter role: not checked in the browser: run fourflow verify",
        ]
    )
    assert {"eth_chainId", "eth_call"} <= set(methods)  # asked anvil, not our server

    show_flows(tab, "capital")
    disbursement = tab.locator('#timeline > li[data-kind="disbursement"]').first
    expect(disbursement.locator("[data-proof]")).to_have_attribute("data-proof", "chain_log")
    result = verify_entry(disbursement)
    expect(result).to_have_attribute("data-verdict", "ok")
    expect(result.locator("ol.steps li.passed")).to_have_count(7)
    expect(result.locator("ol.steps li").nth(6)).to_contain_text(
        "✓ 7. topics and data: 3 topics and 96 bytes"
    )
    assert {"eth_getTransactionReceipt", "eth_getBlockByNumber"} <= set(methods)
    save_screenshot(tab, request)


def _flip_last_digit(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def test_a_tampered_answer_from_our_server_fails_verification(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    """The server (here, the network between) changes one payload byte of a Merkle entry
    and one byte of a chain log's data: the browser's checks catch both."""
    tampered: dict[str, str] = {}

    def tamper(route: Route) -> None:
        """The first logistics entry (Merkle) and the disbursement (a chain log), each
        time they are served."""
        answer = route.fetch()
        body = answer.json()
        for entry in body["entries"]:
            proof = entry["proof"]
            logistics_proof = entry["flow"] == "logistics" and proof["type"] == "merkle"
            if logistics_proof and tampered.setdefault("merkle", entry["id"]) == entry["id"]:
                payload = proof["bundle"]["envelope"]["event"]["payload"]
                payload["bizStep"] = payload["bizStep"][:-1] + "X"
            if entry["kind"] == "disbursement":
                proof["data"] = _flip_last_digit(proof["data"])
                tampered["chain_log"] = entry["id"]
        route.fulfill(response=answer, json=body)

    tab.route("**/v1/pledges/*/history?*", tamper)
    request.addfinalizer(lambda: tab.unroute_all(behavior="ignoreErrors"))
    open_pledge(tab, site)
    show_flows(tab, "logistics", "capital")

    merkle = tab.locator(f'#timeline > li[data-entry-id="{tampered["merkle"]}"]')
    result = verify_entry(merkle)
    expect(result).to_have_attribute("data-verdict", "failed")
    expect(result).to_have_attribute("data-failed-step", "4")
    expect(result.locator(".verdict")).to_contain_text("✗ Failed at step 4 (leaf)")
    expect(result.locator("li.passed")).to_have_count(2)  # format, chain and domain
    expect(result.locator("li.failed")).to_contain_text("✗ 4. leaf:")

    disbursement = tab.locator('#timeline > li[data-kind="disbursement"]')
    assert disbursement.get_attribute("data-entry-id") == tampered["chain_log"]
    result = verify_entry(disbursement)
    expect(result).to_have_attribute("data-failed-step", "7")
    expect(result.locator("li.passed")).to_have_count(6)
    expect(result.locator("li.failed")).to_have_text(
        "✗ 7. topics and data: the log's data differ from the entry's"
    )
    save_screenshot(tab, request)


def test_the_node_for_verification_is_the_users_choice(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    sign_in_as(tab, site, "lender", "#/settings")
    expect(tab.locator("[data-field=chain-id]")).to_have_text("31337")
    nobody = f"http://127.0.0.1:{free_port()}"
    tab.get_by_label("JSON-RPC URL of an Ethereum node").fill(nobody)
    tab.get_by_role("button", name="Save").click()
    expect(tab.locator("#rpc-status")).to_have_text(f"Proofs will be checked against {nobody}.")
    assert tab.evaluate("() => localStorage.getItem('fourflow.rpcUrl')") == nobody
    save_screenshot(tab, request)

    tab.goto(f"{site.url}/#/pledges/{site.pledge_id}")
    result = verify_entry(tab.locator('#timeline > li:has([data-proof="merkle"])').first)
    expect(result).to_have_attribute("data-failed-step", "2")
    expect(result.locator("li.failed")).to_contain_text(f"cannot reach the node at {nobody}")

    tab.goto(f"{site.url}/#/settings")
    tab.get_by_role("button", name="Use the deployment's node").click()
    tab.get_by_role("button", name="Test the node").click()
    expect(tab.locator("#rpc-status")).to_have_text(f"✓ {site.rpc_url} is chain 31337.")


def test_an_asset_link_opens_the_assets_own_timeline(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    open_pledge(tab, site)
    link = tab.locator("#timeline > li a.asset").first
    asset = link.get_attribute("title") or ""
    assert asset.startswith("https://id.gs1.org/")
    link.click()
    expect(tab.locator("#asset-id")).to_have_text(asset)
    everything = site.history(f"/v1/assets/{asset}/history")
    expect(tab.locator("#timeline > li")).to_have_count(min(100, len(everything)))
    first_ids = tab.locator("#timeline > li").evaluate_all(
        "(items) => items.map((li) => li.dataset.entryId)"
    )
    assert first_ids == [e["id"] for e in everything[:100]]
    expect(tab.get_by_role("link", name=f"pledge #{site.pledge_id}")).to_be_visible()
    show_flows(tab, "logistics", "commercial", "capital")  # a readable length for the screenshot
    save_screenshot(tab, request)


# --- alarms ---------------------------------------------------------------------------


def test_alarms_are_listed_acknowledged_with_a_signature_and_followed_live(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    before = site.get("/v1/alarms", "lender")["alarms"]
    showing = [a for a in before if a["state"] in ("open", "acknowledged")]
    signed: list[str] = []
    bank = site.accounts["lender"]
    give_wallet(tab, bank, signed_texts=signed)
    tab.goto(f"{site.url}/#/alarms")
    tab.get_by_role("button", name="Sign in with your wallet").click()
    rows = tab.locator("#alarms tbody tr")
    expect(rows).to_have_count(len(showing))
    expect(
        tab.locator("#alarms tbody tr[data-category=unauthorized_movement]").first
    ).to_contain_text("unauthorized movement")

    first = next(a for a in showing if a["state"] == "open")
    row = tab.locator(f'#alarms tbody tr[data-alarm-id="{first["id"]}"]')
    expect(row.locator("td a")).to_have_attribute("href", f"#/pledges/{first['pledge_id']}")
    row.get_by_role("button", name="Acknowledge").click()
    expect(row).to_have_attribute("data-state", "acknowledged")
    expect(row.get_by_role("button", name="Acknowledge")).to_have_count(0)
    statement = signed[-1]
    assert statement.startswith(f"fourflow: mark alarm acknowledged\nalarm: {first['id']}\nat: ")
    assert statement.endswith("\nchain: 31337")
    after = site.get(f"/v1/alarms/{first['id']}", "lender")
    assert after["state"] == "acknowledged"
    assert after["acknowledged_by"] == bank.address

    # the borrower acknowledges another one elsewhere: the page learns it from the stream
    second = next(a for a in showing if a["state"] == "open" and a["id"] != first["id"])
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    borrower = site.accounts["borrower"]
    signature = sign_change(
        borrower, alarm_id=second["id"], state="acknowledged", at=at, chain_id=31337
    )
    answer = httpx.post(
        f"{site.url}/v1/alarms/{second['id']}/acknowledge",
        headers={"Authorization": f"Bearer {site.token('borrower')}"},
        json={"at": at, "signature": signature},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    expect(tab.locator(f'#alarms tbody tr[data-alarm-id="{second["id"]}"]')).to_have_attribute(
        "data-state", "acknowledged", timeout=15_000
    )
    still_open = sum(1 for a in showing if a["state"] == "open") - 2
    expect(tab.locator("#alarm-count")).to_have_text(str(still_open))
    save_screenshot(tab, request)


# --- someone with no part in it -------------------------------------------------------


def test_an_outsider_sees_no_pledge_and_not_found_or_not_yours(
    tab: Page, site: Site, request: pytest.FixtureRequest
) -> None:
    sign_in_as(tab, site, "outsider")
    expect(tab.locator("#session-who [data-field=roles]")).to_have_text("no role")
    expect(tab.locator("#no-pledges")).to_have_text("There are no pledges you are party to.")
    tab.goto(f"{site.url}/#/pledges/{site.pledge_id}")
    problem = tab.locator("[data-problem=forbidden]")
    expect(problem.get_by_role("heading")).to_have_text("Not found or not yours")
    expect(problem).to_contain_text(f"pledge {site.pledge_id}: no such pledge, or not yours to see")
    save_screenshot(tab, request)
