// fourflow lender dashboard. Plain ES modules, no framework, no build step; docs/dashboard.md.
//
// One page, routed by the URL fragment:
//   #/pledges           the pledges the signed-in address is party to
//   #/pledges/<id>      one pledge: summary cards, the count chart, the sites' days
//                       (operations.js), the four-flow timeline
//   #/assets/<id>       one asset's summary, its sites' days and its timeline (the id
//                       URI-encoded)
//   #/alarms            open and acknowledged alarms, live
//   #/settings          the JSON-RPC node used to verify proofs
//
// Everything shown comes from the /v1 API with a bearer token from Sign-In with Ethereum
// (EIP-4361). Proofs are re-checked here, against a JSON-RPC node the user chooses, so
// the lender need not take our server's word for them. Data reaches the DOM as text
// only (textContent / text nodes, never innerHTML), and the page's CSP forbids inline
// script.

import { verifyBundle } from "./verify.js";
import { verifyChainLog } from "./verify-log.js";
import { isValidAddress, toChecksumAddress } from "./keccak.js";
import { chartSection } from "./chart.js";
import { operationsSections } from "./operations.js";
import {
  addressNode,
  badge,
  check,
  clip,
  clipStart,
  confidence,
  h,
  humanize,
  money,
  percentOfBps,
  s,
  shortHex,
  timeNode,
} from "./dom.js";

const SESSION_KEY = "fourflow.session"; // sessionStorage: {token, address, roles, expires_at}
const RPC_KEY = "fourflow.rpcUrl"; // localStorage: the user's own node, if set
const PAGE_SIZE = 100;
const FLOWS = ["information", "logistics", "commercial", "capital"];
const FLOW_LABELS = {
  information: "Information",
  logistics: "Logistics",
  commercial: "Commercial",
  capital: "Capital",
};
const NOT_IN_BROWSER = "not checked in the browser";

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------------------------------
// the session: a bearer token in sessionStorage (gone when the tab closes)

function readSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
    if (stored && Date.parse(stored.expires_at) > Date.now()) return stored;
  } catch {
    // a damaged entry is no session
  }
  return null;
}

let expiryTimer = null;

function startSession({ token, address, roles, expires_at }) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token, address, roles, expires_at }));
  showSessionHeader();
  alarmFeed.start();
}

function endSession(message) {
  sessionStorage.removeItem(SESSION_KEY);
  alarmFeed.stop();
  showSessionHeader();
  if (message) flash(message);
  route();
}

function showSessionHeader() {
  const session = readSession();
  clearTimeout(expiryTimer);
  $("#nav").hidden = !session;
  $("#session").hidden = !session;
  if (!session) return;
  const roles = session.roles.length ? session.roles.join(", ") : "no role";
  $("#session-who").replaceChildren(
    addressNode(session.address),
    h("span", { class: "roles", "data-field": "roles" }, roles),
    h("span", { class: "muted" }, "until ", timeNode(session.expires_at)),
  );
  const left = Date.parse(session.expires_at) - Date.now();
  expiryTimer = setTimeout(
    () => endSession("Your sign-in has expired: sign in again."),
    Math.min(Math.max(left, 0), 2 ** 31 - 1),
  );
}

let flashTimer = null;

function flash(message) {
  const box = $("#flash");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => {
    box.hidden = true;
  }, 8000);
}

// ---------------------------------------------------------------------------------------
// the API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// `token`: use this one instead of the session's; `anonymous`: send none.
async function api(path, { method = "GET", body, signal, token, anonymous = false } = {}) {
  const bearer = anonymous ? null : (token ?? readSession()?.token);
  const headers = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const payload = await response.json().catch(() => null);
  if (response.ok) return payload;
  const error = payload?.error ?? {};
  const failure = new ApiError(
    response.status,
    error.code ?? "http_error",
    error.message ?? `HTTP ${response.status} from ${path}`,
  );
  if (response.status === 401 && bearer && token === undefined) {
    endSession(`Signed out: ${failure.message}`);
  }
  throw failure;
}

// ---------------------------------------------------------------------------------------
// the chain: public facts from /v1/chain, and the node the user verifies against

let chainFactsPromise = null;

function chainFacts() {
  chainFactsPromise ??= api("/v1/chain", { anonymous: true }).catch((error) => {
    chainFactsPromise = null;
    throw error;
  });
  return chainFactsPromise;
}

// The user's own node if set (localStorage), else the deployment's; null if neither.
async function rpcUrl() {
  const own = localStorage.getItem(RPC_KEY);
  if (own) return own;
  try {
    return (await chainFacts()).rpc_url ?? null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// routing: one view at a time; leaving a view aborts its requests and renders

const ROUTES = [
  [/^#\/pledges\/(\d+)$/, (signal, m) => showPledge(signal, Number(m[1]))],
  [/^#\/assets\/(.+)$/, (signal, m) => showAsset(signal, decodeURIComponent(m[1]))],
  [/^#\/alarms$/, (signal) => showAlarms(signal)],
  [/^#\/settings$/, (signal) => showSettings(signal)],
  [/^(#\/pledges|#\/?|)$/, (signal) => showPledges(signal)],
];

let currentView = null;

function route() {
  currentView?.abort();
  currentView = new AbortController();
  const signal = currentView.signal;
  const hash = location.hash;
  markNav(hash);
  if (!readSession()) {
    showSignIn(signal);
    return;
  }
  const found = ROUTES.find(([pattern]) => pattern.test(hash));
  if (!found) {
    show(
      signal,
      h("h1", "Not here"),
      h("p", "No such page. ", h("a", { href: "#/pledges" }, "Pledges")),
    );
    return;
  }
  const [pattern, view] = found;
  view(signal, hash.match(pattern)).catch((error) => {
    if (signal.aborted) return;
    show(signal, problem(error));
  });
}

function markNav(hash) {
  for (const link of document.querySelectorAll("#nav a")) {
    const here =
      hash.startsWith(`#/${link.dataset.nav}`) || (!hash && link.dataset.nav === "pledges");
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// Replace the view's content, unless the user has moved on.
function show(signal, ...nodes) {
  if (signal.aborted) return false;
  const content = nodes
    .flat(Infinity)
    .filter((node) => node !== null && node !== undefined && node !== false);
  $("#view").replaceChildren(...content);
  return true;
}

function loading(title) {
  return [h("h1", title), h("p", { class: "loading", role: "status" }, "Loading…")];
}

// An error, said plainly. A 403 from the API means "no such thing, or not yours": the
// API does not tell the two apart, and neither do we.
function problem(error) {
  if (error instanceof ApiError && error.status === 403) {
    return h(
      "section",
      { class: "problem", role: "alert", "data-problem": "forbidden" },
      h("h1", "Not found or not yours"),
      h("p", error.message),
      h(
        "p",
        "The dashboard shows only what your address is party to: " +
          "as lender, borrower, custodian or auditor.",
      ),
      h("p", h("a", { href: "#/pledges" }, "Back to your pledges")),
    );
  }
  const detail =
    error instanceof ApiError ? `${error.message} (${error.code})` : String(error.message ?? error);
  return h(
    "section",
    { class: "problem", role: "alert", "data-problem": "error" },
    h("h1", "Something went wrong"),
    h("p", detail),
  );
}

// ---------------------------------------------------------------------------------------
// view: sign in

// EIP-4361, byte for byte as the siwe package writes it (api/siwe_client.py); the server
// parses it with that package and checks domain, URI, chain id, nonce and issued-at.
function siweMessage(offer, address, issuedAt) {
  const header = `${offer.domain} wants you to sign in with your Ethereum account:\n${address}`;
  const prefix = offer.statement ? `${header}\n\n${offer.statement}` : `${header}\n`;
  const fields = [
    `URI: ${offer.uri}`,
    `Version: ${offer.version ?? "1"}`,
    `Chain ID: ${offer.chain_id}`,
    `Nonce: ${offer.nonce}`,
    `Issued At: ${issuedAt.toISOString()}`,
  ];
  return `${prefix}\n\n${fields.join("\n")}`;
}

function utf8Hex(text) {
  const bytes = new TextEncoder().encode(text);
  return "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function signInWithWallet(provider, say) {
  say("Asking your wallet for an account…");
  const accounts = await provider.request({ method: "eth_requestAccounts" });
  if (!Array.isArray(accounts) || !accounts.length) throw new Error("the wallet shared no account");
  const address = toChecksumAddress(accounts[0]);
  say("Asking fourflow for a sign-in nonce…");
  const offer = await api("/v1/auth/nonce", { method: "POST", anonymous: true });
  const message = siweMessage(offer, address, new Date());
  say(`Sign the message in your wallet (as ${address})…`);
  const signature = await provider.request({
    method: "personal_sign",
    params: [utf8Hex(message), address],
  });
  say("Checking the signature…");
  return api("/v1/auth/token", { method: "POST", body: { message, signature }, anonymous: true });
}

function walletError(error) {
  if (error?.code === 4001) return "You declined the request in your wallet.";
  return error?.message ?? String(error);
}

function showSignIn(signal) {
  const provider = window.ethereum;
  const status = h("p", {
    class: "status",
    id: "sign-in-status",
    role: "status",
    "aria-live": "polite",
  });
  const say = (text, failed = false) => {
    status.textContent = text;
    status.classList.toggle("failed", failed);
  };
  const finish = async (work) => {
    try {
      const answer = await work();
      startSession(answer);
      route();
    } catch (error) {
      say(
        error instanceof ApiError
          ? `Refused: ${error.message} (${error.code})`
          : walletError(error),
        true,
      );
    }
  };

  const walletPart = provider
    ? h(
        "div",
        { class: "wallet" },
        h(
          "button",
          {
            type: "button",
            id: "wallet-sign-in",
            class: "primary",
            onclick: () => finish(() => signInWithWallet(provider, say)),
          },
          "Sign in with your wallet",
        ),
        h(
          "p",
          { class: "muted" },
          "Your wallet signs a sign-in message (EIP-4361); " +
            "nothing is sent to the chain and it costs nothing.",
        ),
      )
    : h(
        "p",
        { class: "notice", id: "no-wallet", role: "note" },
        "No Ethereum wallet was found in this browser " +
          "(there is no EIP-1193 provider at window.ethereum). " +
          "Install or enable a wallet extension and reload, or sign in another way below.",
      );

  show(
    signal,
    h(
      "section",
      { class: "sign-in" },
      h("h1", "Sign in"),
      h(
        "p",
        "See the pledges you are party to, their goods and money, and check every proof yourself.",
      ),
      walletPart,
      h(
        "details",
        { class: "other-ways", open: !provider },
        h("summary", "Other ways to sign in"),
        manualSignIn(finish, say),
        tokenSignIn(finish),
      ),
      status,
    ),
  );
}

// Sign the message with a wallet or tool elsewhere, and paste the signature.
function manualSignIn(finish, say) {
  const address = h("input", {
    id: "manual-address",
    name: "address",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "0x…",
  });
  const message = h("textarea", {
    id: "manual-message",
    rows: 10,
    readonly: true,
    spellcheck: "false",
  });
  const signature = h("input", {
    id: "manual-signature",
    name: "signature",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "0x… (65 bytes)",
  });
  const second = h(
    "div",
    { class: "step", hidden: true },
    h(
      "label",
      { for: "manual-message" },
      "2. Sign this exact text with personal_sign (EIP-191), within 5 minutes",
    ),
    message,
    h(
      "button",
      { type: "button", class: "quiet", onclick: () => copy(message.value, say) },
      "Copy the message",
    ),
    h("label", { for: "manual-signature" }, "3. Paste the signature"),
    signature,
    h("button", { type: "submit", class: "primary", id: "manual-sign-in" }, "Sign in"),
  );
  const prepare = async () => {
    const typed = address.value.trim();
    if (!isValidAddress(typed)) {
      say(
        "That is not an Ethereum address " +
          "(0x and 40 hex digits, with a correct EIP-55 checksum if mixed case).",
        true,
      );
      return;
    }
    try {
      const offer = await api("/v1/auth/nonce", { method: "POST", anonymous: true });
      message.value = siweMessage(offer, toChecksumAddress(typed), new Date());
      second.hidden = false;
      say("Sign the message, then paste the signature.");
    } catch (error) {
      say(`Could not get a nonce: ${error.message}`, true);
    }
  };
  const submit = (event) => {
    event.preventDefault();
    if (second.hidden) return;
    const body = { message: message.value, signature: signature.value.trim() };
    finish(() => api("/v1/auth/token", { method: "POST", body, anonymous: true }));
  };
  return h(
    "form",
    { class: "manual", id: "manual-form", onsubmit: submit },
    h("h2", "Sign the message elsewhere"),
    h("label", { for: "manual-address" }, "1. Your address"),
    h(
      "div",
      { class: "row" },
      address,
      h(
        "button",
        { type: "button", id: "manual-prepare", onclick: prepare },
        "Prepare the message",
      ),
    ),
    second,
  );
}

// Paste a token that `fourflow sign-in --api <this server>` printed.
function tokenSignIn(finish) {
  const token = h("input", {
    id: "paste-token",
    name: "token",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "ff1.…",
  });
  const submit = (event) => {
    event.preventDefault();
    const value = token.value.trim();
    finish(async () => ({ token: value, ...(await api("/v1/auth/me", { token: value })) }));
  };
  return h(
    "form",
    { class: "token", id: "token-form", onsubmit: submit },
    h("h2", "Paste a token"),
    h(
      "p",
      { class: "muted" },
      h("code", `fourflow sign-in --api ${location.origin}`),
      " signs in with your key and prints a token.",
    ),
    h("label", { for: "paste-token" }, "Token"),
    h(
      "div",
      { class: "row" },
      token,
      h("button", { type: "submit", id: "use-token" }, "Use this token"),
    ),
  );
}

async function copy(text, say) {
  try {
    await navigator.clipboard.writeText(text);
    say("Copied.");
  } catch {
    say("Copying is not allowed here: select the text and copy it.", true);
  }
}

// ---------------------------------------------------------------------------------------
// view: pledges

async function showPledges(signal) {
  show(signal, loading("Pledges"));
  const [{ pledges }, { alarms }] = await Promise.all([
    api("/v1/pledges", { signal }),
    api("/v1/alarms?state=open", { signal }),
  ]);
  const open = new Map();
  for (const alarm of alarms) open.set(alarm.pledge_id, (open.get(alarm.pledge_id) ?? 0) + 1);
  if (!pledges.length) {
    show(
      signal,
      h("h1", "Pledges"),
      h("p", { class: "empty", id: "no-pledges" }, "There are no pledges you are party to."),
    );
    return;
  }
  show(
    signal,
    h("h1", "Pledges"),
    h(
      "table",
      { class: "pledges", id: "pledges" },
      h("caption", `${pledges.length} pledge${pledges.length === 1 ? "" : "s"} you are party to`),
      h(
        "thead",
        h(
          "tr",
          [
            "Pledge",
            "Status",
            "Borrower",
            "Outstanding / principal",
            "Loan-to-value",
            "Open alarms",
          ].map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      h(
        "tbody",
        pledges.map((pledge) => pledgeRow(pledge, open.get(pledge.pledge_id) ?? 0)),
      ),
    ),
  );
}

function pledgeRow(pledge, openAlarms) {
  const href = `#/pledges/${pledge.pledge_id}`;
  const row = h(
    "tr",
    { class: "clickable", dataset: { pledgeId: pledge.pledge_id } },
    h(
      "td",
      h("a", { href }, `#${pledge.pledge_id}`),
      h("div", { class: "muted" }, pledge.asset_class),
    ),
    h("td", { "data-field": "status" }, statusBadges(pledge)),
    h("td", addressNode(pledge.borrower)),
    h(
      "td",
      { class: "num", "data-field": "money" },
      money(pledge.outstanding, pledge.currency),
      h("span", { class: "muted" }, " / ", money(pledge.principal, pledge.currency)),
    ),
    h("td", { "data-field": "ltv" }, ltvMeter(pledge)),
    h(
      "td",
      { class: "num", "data-field": "alarms" },
      openAlarms ? badge(String(openAlarms), "alarm") : "0",
    ),
  );
  // The link is the keyboard path; the whole row is a larger target for the mouse.
  row.addEventListener("click", (event) => {
    if (!event.target.closest("a")) location.hash = href;
  });
  return row;
}

function statusBadges(pledge) {
  return [
    badge(pledge.status, `status status-${pledge.status}`),
    pledge.frozen.map((reason) =>
      badge(`frozen: ${humanize(reason)}`, "frozen", "the pledge registry froze this pledge"),
    ),
    pledge.margin_call_open ? badge("margin call", "frozen") : null,
  ];
}

// Loan-to-value against the warning and liquidation lines, as a bar and in words.
function ltvMeter(pledge) {
  const valuation = pledge.valuation;
  if (!valuation) return h("span", { class: "muted" }, "no valuation");
  const warning = pledge.warning_ltv_bps;
  const liquidation = pledge.liquidation_ltv_bps;
  const ltv = valuation.ltv_bps; // null: the goods are worth nothing
  const level = ltv === null || ltv >= liquidation ? "danger" : ltv >= warning ? "warning" : "ok";
  const scale = Math.max(liquidation * 1.2, ltv ?? 0, 1);
  const width = 120;
  const at = (bps) => Math.min(width, (bps / scale) * width).toFixed(1);
  const words = ltv === null ? "∞" : percentOfBps(ltv);
  return h(
    "span",
    { class: `ltv ${level}`, "data-ltv-bps": ltv ?? "infinite" },
    s(
      "svg",
      { class: "ltv-bar", width, height: 12, viewBox: `0 0 ${width} 12`, "aria-hidden": "true" },
      s("rect", { class: "track", x: 0, y: 2, width, height: 8, rx: 2 }),
      s("rect", {
        class: "bar",
        x: 0,
        y: 2,
        width: ltv === null ? width : at(ltv),
        height: 8,
        rx: 2,
      }),
      s("line", { class: "warning-line", x1: at(warning), x2: at(warning), y1: 0, y2: 12 }),
      s("line", {
        class: "liquidation-line",
        x1: at(liquidation),
        x2: at(liquidation),
        y1: 0,
        y2: 12,
      }),
    ),
    h("span", { class: "ltv-value" }, words),
    h(
      "span",
      { class: "muted ltv-lines" },
      `warning ${percentOfBps(warning)} · liquidation ${percentOfBps(liquidation)}`,
    ),
  );
}

// ---------------------------------------------------------------------------------------
// view: one pledge

async function showPledge(signal, pledgeId) {
  show(signal, loading(`Pledge #${pledgeId}`));
  const path = `/v1/pledges/${pledgeId}/history`;
  const [pledge, history, { alarms }] = await Promise.all([
    api(`/v1/pledges/${pledgeId}`, { signal }),
    api(`${path}?limit=${PAGE_SIZE}`, { signal }),
    api(`/v1/alarms?pledge_id=${pledgeId}`, { signal }),
  ]);
  const summary = history.summary;
  show(
    signal,
    h(
      "header",
      { class: "view-head" },
      h("h1", `Pledge #${pledgeId}`, h("span", { class: "muted" }, ` · ${pledge.asset_class}`)),
      h("div", { class: "badges", "data-field": "status" }, statusBadges(pledge)),
      evidenceButton(pledgeId),
    ),
    summaryCards(summary, pledge, alarmCounts(alarms)),
    chartSection(summary.quantity),
    operationsSections(summary.operations),
    timelineSection(path, history, signal),
  );
}

// The evidence package needs the bearer token, so it is fetched and saved from a blob.
function evidenceButton(pledgeId) {
  const save = async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const response = await fetch(`/v1/pledges/${pledgeId}/evidence?format=zip`, {
        headers: { Authorization: `Bearer ${readSession()?.token}` },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: `fourflow-pledge-${pledgeId}-evidence.zip` });
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      flash(`Could not download the evidence package: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  };
  return h(
    "button",
    {
      type: "button",
      class: "quiet",
      title: "Every entry and proof, to check offline with fourflow verify",
      onclick: save,
    },
    "Download evidence (zip)",
  );
}

// ---------------------------------------------------------------------------------------
// summary cards: the lender's questions, answered from the history's summary block

function card(key, title, question, ...body) {
  return h(
    "section",
    { class: "card", "data-card": key, "aria-labelledby": `card-${key}` },
    h("h2", { id: `card-${key}` }, title),
    h("p", { class: "question" }, question),
    body,
  );
}

function fields(...pairs) {
  return h(
    "dl",
    pairs
      .filter(Boolean)
      .map(([label, value, field]) => [h("dt", label), h("dd", { "data-field": field }, value)]),
  );
}

// `alarms`: counts from the alarm list, when there is one; the summary block's own counts
// leave out the chain's alarms (freezes, margin calls), which the list has.
function summaryCards(summary, pledge, alarms = null) {
  return h(
    "div",
    { class: "cards" },
    custodyCard(summary.custody, summary.ownership, summary.quantity?.unit),
    quantityCard(summary.quantity),
    ownershipCard(summary.ownership),
    summary.money?.length ? moneyCard(summary.money, pledge) : null,
    alarmsCard(alarms ?? summary.alarms),
  );
}

function custodyCard(custody, ownership, unit) {
  const groups = custody?.now ?? [];
  const receipts = ownership?.receipts ?? [];
  const steps = custody?.chain ?? [];
  return card(
    "custody",
    "Custody",
    "Where are the goods, and who holds them?",
    groups.length
      ? h(
          "ul",
          { class: "plain" },
          groups.map((group) =>
            h(
              "li",
              { dataset: { status: group.status } },
              h("strong", `${group.assets} ${unit ?? "items"} `),
              humanize(group.status),
              group.location
                ? [" at ", h("code", { title: group.location }, clipStart(group.location, 36))]
                : null,
              group.possessor
                ? [
                    " · held by ",
                    h("code", { title: group.possessor }, clipStart(group.possessor, 36)),
                  ]
                : null,
            ),
          ),
        )
      : h("p", { class: "muted" }, "No custody events."),
    receipts.map((receipt) =>
      fields(
        [
          `Receipt #${receipt.receipt_id} location`,
          h("code", receipt.location || "—"),
          "receipt-location",
        ],
        ["Custodian", addressNode(receipt.custodian), "custodian"],
      ),
    ),
    steps.length
      ? h(
          "details",
          h("summary", `Custody chain (${steps.length} step${steps.length === 1 ? "" : "s"})`),
          h(
            "ol",
            { class: "route" },
            steps.map((step) =>
              h(
                "li",
                timeNode(step.time),
                " ",
                humanize(step.kind),
                step.location ? [" · ", h("code", clipStart(step.location, 36))] : null,
              ),
            ),
          ),
        )
      : null,
  );
}

function quantityCard(quantity) {
  if (!quantity || !quantity.latest) {
    return card(
      "quantity",
      "Quantity",
      "How many are there, against the covenant minimum?",
      h("p", { class: "muted" }, "No counts yet."),
    );
  }
  const { unit, latest, minimum, booked } = quantity;
  const onChain = quantity.latest_on_chain;
  return card(
    "quantity",
    "Quantity",
    "How many are there, against the covenant minimum?",
    h("p", { class: "big", "data-field": "latest" }, `${latest.quantity} ${unit}`),
    h(
      "p",
      { "data-field": "against-minimum" },
      minimum === null || minimum === undefined
        ? h("span", { class: "muted" }, "no covenant minimum")
        : check(
            !quantity.below_minimum,
            `at or above the minimum of ${minimum}`,
            `below the minimum of ${minimum}`,
          ),
    ),
    fields(
      ["Booked on the receipt", `${booked} ${unit}`, "booked"],
      [
        "Covenant minimum",
        minimum === null || minimum === undefined ? "—" : `${minimum} ${unit}`,
        "minimum",
      ],
      ["Last counted", timeNode(latest.time_ms), "latest-time"],
      ["Method", `${humanize(latest.method)}${confidence(latest.confidence)}`, "method"],
      onChain
        ? [
            "Reported on chain",
            `${onChain.quantity} ${unit} (block ${onChain.block_number})`,
            "on-chain",
          ]
        : null,
    ),
  );
}

function ownershipCard(ownership) {
  const receipts = ownership?.receipts ?? [];
  const pledges = ownership?.pledges ?? [];
  return card(
    "ownership",
    "Ownership",
    "Who owns the goods, and who has a lien?",
    receipts.map((receipt) =>
      fields(
        [`Owner (receipt #${receipt.receipt_id})`, addressNode(receipt.owner), "owner"],
        [
          "Receipt",
          `${humanize(receipt.status)} · ` +
            `${receipt.quantity} ${receipt.unit} of ${receipt.asset_class}`,
          "receipt",
        ],
      ),
    ),
    pledges.map((pledge) =>
      fields(
        [`Lien (pledge #${pledge.pledge_id})`, check(pledge.lien_active, "active", "none"), "lien"],
        ["Lien holder (lender)", addressNode(pledge.lender), "lender"],
        ["Borrower", addressNode(pledge.borrower), "borrower"],
      ),
    ),
    !receipts.length && !pledges.length
      ? h("p", { class: "muted" }, "No receipt binds these goods.")
      : null,
  );
}

function moneyCard(loans, pledge) {
  return card(
    "money",
    "Money",
    "Where did the money go?",
    loans.map((loan) =>
      h(
        "div",
        { class: "loan" },
        fields(
          ["Principal", money(loan.principal, loan.currency), "principal"],
          [
            "Disbursed",
            [
              money(loan.disbursed, loan.currency),
              " ",
              loan.disbursements.length
                ? check(
                    loan.all_to_designated_payee,
                    "all to the designated payee",
                    "not all to the designated payee",
                  )
                : h("span", { class: "muted" }, "nothing yet"),
            ],
            "disbursed",
          ],
          ["Designated payee", addressNode(loan.payee), "payee"],
          ["Repaid", money(loan.repaid, loan.currency), "repaid"],
          ["Outstanding", h("strong", money(loan.outstanding, loan.currency)), "outstanding"],
          loan.margin ? ["Margin posted", money(loan.margin, loan.currency), "margin"] : null,
          loan.liquidation
            ? ["Liquidation", JSON.stringify(loan.liquidation), "liquidation"]
            : null,
          pledge && pledge.pledge_id === loan.pledge_id
            ? ["Loan-to-value", ltvMeter(pledge), "ltv"]
            : null,
        ),
        loan.disbursements.length
          ? h(
              "ul",
              { class: "plain payments" },
              loan.disbursements.map((paid) =>
                h(
                  "li",
                  check(paid.to_designated_payee, "", ""),
                  ` ${money(paid.amount, loan.currency)} to `,
                  addressNode(paid.payee),
                  " · ",
                  timeNode(paid.time),
                ),
              ),
            )
          : null,
      ),
    ),
  );
}

function alarmCounts(alarms) {
  const count = (state) => alarms.filter((alarm) => alarm.state === state).length;
  const open = alarms.filter((alarm) => alarm.state === "open");
  return {
    open: count("open"),
    acknowledged: count("acknowledged"),
    cleared: count("cleared"),
    latest: open.map(({ severity, message }) => ({ severity, message })),
  };
}

function alarmsCard(alarms) {
  if (!alarms) return null;
  const latest = (alarms.latest ?? []).slice(-3).reverse();
  return card(
    "alarms",
    "Alarms",
    "Has anything gone wrong?",
    fields(
      ["Open", h("strong", String(alarms.open)), "open"],
      ["Acknowledged", String(alarms.acknowledged), "acknowledged"],
      ["Cleared", String(alarms.cleared), "cleared"],
    ),
    latest.length
      ? h(
          "ul",
          { class: "plain latest-alarms" },
          latest.map((alarm) =>
            h(
              "li",
              badge(alarm.severity, `severity sev-${alarm.severity}`),
              clip(alarm.message, 90),
            ),
          ),
        )
      : null,
    h("p", h("a", { href: "#/alarms" }, "All alarms")),
  );
}

// ---------------------------------------------------------------------------------------
// the four-flow timeline: filter chips, pages, and a verify button per entry

function timelineSection(path, firstPage, signal) {
  const state = { flows: new Set(FLOWS), next: firstPage.next_cursor, generation: 0 };
  const list = h("ol", { class: "timeline", id: "timeline" });
  const count = h("p", {
    class: "muted",
    id: "timeline-count",
    role: "status",
    "aria-live": "polite",
  });
  const more = h(
    "button",
    { type: "button", id: "load-more", onclick: () => loadMore() },
    "Load more",
  );

  const url = (cursor) => {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE), summary: "false" });
    if (state.flows.size < FLOWS.length) query.set("flow", [...state.flows].join(","));
    if (cursor) query.set("cursor", cursor);
    return `${path}?${query}`;
  };
  const update = () => {
    const shown = list.children.length;
    const entries = `${shown} entr${shown === 1 ? "y" : "ies"}`;
    count.textContent = `${entries}, ${state.next ? "more to load" : "all loaded"}`;
    more.hidden = !state.next;
  };
  const append = (entries) => list.append(...entries.map(entryItem));

  async function fetchPage(cursor) {
    const generation = state.generation;
    const page = await api(url(cursor), { signal });
    if (generation !== state.generation) return; // the filter changed meanwhile
    append(page.entries);
    state.next = page.next_cursor;
    update();
  }

  async function loadMore() {
    more.disabled = true;
    try {
      await fetchPage(state.next);
    } catch (error) {
      if (!signal.aborted) flash(`Could not load more: ${error.message}`);
    } finally {
      more.disabled = false;
    }
  }

  async function toggle(chip) {
    const flow = chip.dataset.flow;
    if (state.flows.has(flow) && state.flows.size === 1) {
      flash("At least one flow stays shown.");
      return;
    }
    if (state.flows.has(flow)) state.flows.delete(flow);
    else state.flows.add(flow);
    chip.setAttribute("aria-pressed", String(state.flows.has(flow)));
    state.generation += 1;
    state.next = null;
    more.hidden = true;
    list.replaceChildren();
    count.textContent = "Loading…";
    try {
      await fetchPage(null);
    } catch (error) {
      if (!signal.aborted) flash(`Could not load the timeline: ${error.message}`);
    }
  }

  const chips = FLOWS.map((flow) =>
    h(
      "button",
      {
        type: "button",
        class: `chip flow-${flow}`,
        "aria-pressed": "true",
        dataset: { flow },
        onclick: (event) => toggle(event.currentTarget),
      },
      FLOW_LABELS[flow],
    ),
  );
  append(firstPage.entries);
  update();
  return h(
    "section",
    { class: "panel", "aria-labelledby": "timeline-heading" },
    h("h2", { id: "timeline-heading" }, "Four-flow timeline"),
    h("div", { class: "chips", role: "group", "aria-label": "Show flows" }, chips),
    list,
    h("div", { class: "more-row" }, count, more),
  );
}

function entryItem(entry) {
  return h(
    "li",
    {
      class: `entry flow-${entry.flow}`,
      dataset: { flow: entry.flow, kind: entry.kind, entryId: entry.id },
    },
    h("div", { class: "when" }, timeNode(entry.time)),
    h(
      "div",
      { class: "what" },
      h(
        "div",
        h(
          "span",
          { class: `flow-badge flow-${entry.flow}` },
          FLOW_LABELS[entry.flow] ?? entry.flow,
        ),
        " ",
        h("strong", { class: "kind" }, entry.kind),
      ),
      summaryLine(entry.summary),
      actorsLine(entry.actors),
      assetsLine(entry.assets),
    ),
    proofBlock(entry.proof),
  );
}

function summaryLine(summary) {
  if (!summary || typeof summary !== "object") return null;
  const parts = [];
  for (const [key, value] of Object.entries(summary)) {
    const nested = typeof value === "object" && value !== null && !Array.isArray(value);
    if (value === null || value === "" || nested) continue; // the details have them
    const text = Array.isArray(value)
      ? value.map((item) => (typeof item === "object" ? JSON.stringify(item) : item)).join(", ")
      : String(value);
    parts.push(`${humanize(key)}: ${clip(text, 48)}`);
    if (parts.length === 5) break;
  }
  const details = h("details", { class: "raw" }, h("summary", "details"));
  // filled on first opening: a timeline can hold hundreds of entries
  details.addEventListener("toggle", () => {
    if (details.open && details.children.length === 1) {
      details.append(h("pre", JSON.stringify(summary, null, 2)));
    }
  });
  return h("p", { class: "summary" }, parts.join(" · "), " ", details);
}

function actorsLine(actors) {
  if (!actors?.length) return null;
  return h(
    "p",
    { class: "actors" },
    actors.map((actor, i) => [
      i ? ", " : "",
      `${humanize(actor.role)} `,
      addressNode(actor.address),
    ]),
  );
}

function assetLink(assetId) {
  const href = `#/assets/${encodeURIComponent(assetId)}`;
  return h("a", { class: "asset", href, title: assetId }, clipStart(assetId, 20));
}

function assetsLine(assets) {
  if (!assets?.length) return null;
  const first = assets.slice(0, 3);
  const rest = assets.slice(3);
  return h(
    "p",
    { class: "assets" },
    "assets ",
    first.map((assetId, i) => [i ? ", " : "", assetLink(assetId)]),
    rest.length
      ? h(
          "details",
          { class: "more-assets" },
          h("summary", `and ${rest.length} more`),
          h(
            "span",
            rest.map((assetId, i) => [i ? ", " : "", assetLink(assetId)]),
          ),
        )
      : null,
  );
}

function proofBlock(proof) {
  const result = h("div", { class: "verify-result", role: "status", "aria-live": "polite" });
  let label;
  let verifiable = true;
  if (proof?.type === "merkle" && proof.status === "anchored") {
    const batch = proof.bundle.batch;
    label = `Merkle proof · batch ${batch.stream}/${batch.seq}`;
  } else if (proof?.type === "merkle") {
    label = "Merkle proof · waiting to be anchored";
    verifiable = false;
  } else if (proof?.type === "chain_log") {
    const emitter = proof.contract_name ?? shortHex(proof.contract);
    const event = proof.event ? `${emitter}.${proof.event}` : emitter;
    label = `On chain · ${event} · block ${proof.block_number}`;
  } else {
    label = "No proof";
    verifiable = false;
  }
  const button = verifiable
    ? h(
        "button",
        {
          type: "button",
          class: "verify",
          onclick: (event) => verify(proof, event.currentTarget, result),
        },
        "Verify",
      )
    : null;
  return h(
    "div",
    { class: "proof", dataset: { proof: proof?.type ?? "none" } },
    h("span", { class: "proof-label" }, label),
    button,
    result,
  );
}

function stepItem(step) {
  const unchecked = step.detail.startsWith(NOT_IN_BROWSER);
  return h(
    "li",
    { class: unchecked ? "unchecked" : "passed", dataset: { step: step.n } },
    `${unchecked ? "–" : "✓"} ${step.n}. ${step.name}: ${step.detail}`,
  );
}

// Re-check one entry's proof in this browser against the chosen node.
async function verify(proof, button, result) {
  const url = await rpcUrl();
  if (!url) {
    result.replaceChildren(
      h(
        "p",
        { class: "bad" },
        "No JSON-RPC node to check against: set one in ",
        h("a", { href: "#/settings" }, "Settings"),
        ".",
      ),
    );
    return;
  }
  button.disabled = true;
  const steps = h("ol", { class: "steps" });
  const heading = h("p", { class: "verdict" }, "Checking against ", h("code", url), "…");
  result.dataset.verdict = "running";
  result.replaceChildren(heading, steps);
  const onStep = (step) => steps.append(stepItem(step));
  const outcome =
    proof.type === "merkle"
      ? await verifyBundle(proof.bundle, url, onStep)
      : await verifyChainLog(proof, url, onStep);
  if (outcome.ok) {
    heading.replaceChildren(
      h("span", { class: "good" }, "✓ Verified"),
      " against ",
      h("code", url),
    );
    result.dataset.verdict = "ok";
  } else {
    steps.append(
      h(
        "li",
        { class: "failed", dataset: { step: outcome.step } },
        `✗ ${outcome.step}. ${outcome.name}: ${outcome.message}`,
      ),
    );
    heading.replaceChildren(
      h("span", { class: "bad" }, `✗ Failed at step ${outcome.step} (${outcome.name})`),
      " against ",
      h("code", url),
    );
    result.dataset.verdict = "failed";
    result.dataset.failedStep = String(outcome.step);
  }
  if (proof.type === "merkle") {
    steps.after(
      h(
        "p",
        { class: "muted" },
        "Signature and signer role: run ",
        h("code", "fourflow verify"),
        " on the evidence package.",
      ),
    );
  }
  button.disabled = false;
}

// ---------------------------------------------------------------------------------------
// view: one asset

async function showAsset(signal, assetId) {
  show(signal, loading("Asset"));
  const path = `/v1/assets/${encodeURIComponent(assetId)}/history`;
  const history = await api(`${path}?limit=${PAGE_SIZE}`, { signal });
  const pledges = history.subject.pledges ?? [];
  show(
    signal,
    h(
      "header",
      { class: "view-head" },
      h("h1", "Asset ", h("code", { class: "asset-id", id: "asset-id" }, assetId)),
      pledges.length
        ? h(
            "p",
            "Under ",
            pledges.map((id, i) => [
              i ? ", " : "",
              h("a", { href: `#/pledges/${id}` }, `pledge #${id}`),
            ]),
          )
        : null,
    ),
    summaryCards(history.summary, null),
    history.summary.quantity?.trend?.length ? chartSection(history.summary.quantity) : null,
    operationsSections(history.summary.operations),
    timelineSection(path, history, signal),
  );
}

// ---------------------------------------------------------------------------------------
// view: alarms, kept current by the alarm feed

const ALARM_STATES = ["open", "acknowledged", "cleared"];

async function showAlarms(signal) {
  show(signal, loading("Alarms"));
  await alarmFeed.refresh(signal);
  const shown = new Set(["open", "acknowledged"]);
  const signing = h("section", { class: "panel", id: "ack-signing", hidden: true });
  const onAcknowledge = acknowledger(signing);
  const body = h("tbody");
  const caption = h("caption");
  const live = h("span", { class: "muted live", id: "alarms-live" });
  const render = () => {
    const alarms = alarmFeed.list().filter((alarm) => shown.has(alarm.state));
    const states = [...shown].join(", ") || "no state chosen";
    caption.textContent = `${alarms.length} alarm${alarms.length === 1 ? "" : "s"} (${states})`;
    live.textContent = alarmFeed.live ? "● live" : "updates paused";
    body.replaceChildren(...alarms.map((alarm) => alarmRow(alarm, onAcknowledge)));
  };
  const filters = ALARM_STATES.map((state) => {
    const box = h("input", { type: "checkbox", id: `show-${state}`, checked: shown.has(state) });
    box.addEventListener("change", () => {
      if (box.checked) shown.add(state);
      else shown.delete(state);
      render();
    });
    return h("label", { class: "inline" }, box, ` ${state}`);
  });
  const headings = ["Opened", "Category", "Severity", "What happened", "Pledge", "State", "Action"];
  render();
  alarmFeed.subscribe(render, signal);
  show(
    signal,
    h("h1", "Alarms"),
    h(
      "div",
      { class: "filters", role: "group", "aria-label": "Show alarms that are" },
      filters,
      live,
    ),
    signing,
    h(
      "table",
      { class: "alarms", id: "alarms" },
      caption,
      h(
        "thead",
        h(
          "tr",
          headings.map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      body,
    ),
  );
}

function alarmRow(alarm, onAcknowledge) {
  const byWhom = alarm.acknowledged_by ? `by ${alarm.acknowledged_by}` : undefined;
  const pledgeLink = alarm.pledge_id
    ? h("a", { href: `#/pledges/${alarm.pledge_id}` }, `#${alarm.pledge_id}`)
    : "—";
  const action =
    alarm.state === "open"
      ? h(
          "button",
          {
            type: "button",
            class: "acknowledge",
            onclick: (event) => onAcknowledge(alarm, event.currentTarget),
          },
          "Acknowledge",
        )
      : null;
  return h(
    "tr",
    { dataset: { alarmId: alarm.id, state: alarm.state, category: alarm.category } },
    h("td", { class: "when" }, timeNode(alarm.opened)),
    h("td", badge(humanize(alarm.category), `category cat-${alarm.category}`, alarm.rule)),
    h("td", badge(alarm.severity, `severity sev-${alarm.severity}`)),
    h(
      "td",
      { class: "message" },
      alarm.message,
      h("div", { class: "muted" }, humanize(alarm.rule)),
    ),
    h("td", pledgeLink),
    h("td", { "data-field": "state" }, badge(alarm.state, `state state-${alarm.state}`, byWhom)),
    h("td", action),
  );
}

// Acknowledging is a signed statement (ledger.alarms.change_statement), not only an
// authenticated request: the server keeps the signature, and checks that the signer is
// the signed-in address and that `at` is within five minutes of its clock.
function changeStatement(alarmId, state, at, chainId) {
  return `fourflow: mark alarm ${state}\nalarm: ${alarmId}\nat: ${at}\nchain: ${chainId}`;
}

async function postAcknowledgement(alarm, at, signature) {
  const changed = await api(`/v1/alarms/${encodeURIComponent(alarm.id)}/acknowledge`, {
    method: "POST",
    body: { at, signature },
  });
  alarmFeed.put(changed);
  flash("Alarm acknowledged.");
}

// With a wallet, it signs; without one, `panel` asks for a signature made elsewhere.
function acknowledger(panel) {
  return async (alarm, button) => {
    button.disabled = true;
    try {
      const { chain_id: chainId } = await chainFacts();
      const at = new Date().toISOString();
      const statement = changeStatement(alarm.id, "acknowledged", at, chainId);
      const provider = window.ethereum;
      if (!provider) {
        askForSignature(panel, alarm, at, statement);
        return;
      }
      const signature = await provider.request({
        method: "personal_sign",
        params: [utf8Hex(statement), readSession().address],
      });
      await postAcknowledgement(alarm, at, signature);
    } catch (error) {
      const reason = error instanceof ApiError ? error.message : walletError(error);
      flash(`Could not acknowledge: ${reason}`);
    } finally {
      button.disabled = false;
    }
  };
}

function askForSignature(panel, alarm, at, statement) {
  const text = h("textarea", { id: "ack-statement", rows: 4, readonly: true, spellcheck: "false" });
  text.value = statement;
  const signature = h("input", {
    id: "ack-signature",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "0x… (65 bytes)",
  });
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const close = () => {
    panel.hidden = true;
    panel.replaceChildren();
  };
  const submit = async (event) => {
    event.preventDefault();
    try {
      await postAcknowledgement(alarm, at, signature.value.trim());
      close();
    } catch (error) {
      status.textContent = `Refused: ${error.message}`;
      status.classList.add("failed");
    }
  };
  panel.replaceChildren(
    h(
      "form",
      { onsubmit: submit },
      h("h2", "Sign the acknowledgement"),
      h(
        "p",
        "There is no wallet in this browser. Sign this statement with personal_sign (EIP-191) as ",
        addressNode(readSession()?.address),
        " within five minutes, and paste the signature.",
      ),
      h("label", { for: "ack-statement" }, "Statement"),
      text,
      h("label", { for: "ack-signature" }, "Signature"),
      signature,
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit", class: "primary" }, "Acknowledge"),
        h("button", { type: "button", onclick: close }, "Cancel"),
      ),
      status,
    ),
  );
  panel.hidden = false;
  signature.focus();
}

// The caller's alarms: listed once, then followed on the server-sent event stream. The
// stream is read with fetch() rather than EventSource, which cannot send the bearer
// token; it ends by itself every few minutes and is then reopened.
class AlarmFeed {
  constructor() {
    this.alarms = new Map();
    this.listeners = new Set();
    this.controller = null;
    this.live = false;
  }

  list() {
    return [...this.alarms.values()].sort((a, b) => a.opened_ms - b.opened_ms);
  }

  async refresh(signal) {
    const { alarms } = await api("/v1/alarms", { signal });
    this.alarms = new Map(alarms.map((alarm) => [alarm.id, alarm]));
    this.changed();
  }

  put(alarm) {
    this.alarms.set(alarm.id, alarm);
    this.changed();
  }

  changed() {
    const open = this.list().filter((alarm) => alarm.state === "open").length;
    const badgeNode = $("#alarm-count");
    badgeNode.textContent = String(open);
    badgeNode.hidden = open === 0;
    badgeNode.setAttribute("aria-label", `${open} open`);
    for (const listener of this.listeners) listener();
  }

  subscribe(listener, signal) {
    this.listeners.add(listener);
    signal.addEventListener("abort", () => this.listeners.delete(listener));
  }

  start() {
    this.stop();
    this.controller = new AbortController();
    const signal = this.controller.signal;
    this.refresh(signal)
      .catch(() => {})
      .then(() => this.follow(signal));
  }

  stop() {
    this.controller?.abort();
    this.controller = null;
    this.alarms.clear();
    this.live = false;
    const badgeNode = $("#alarm-count");
    if (badgeNode) badgeNode.hidden = true;
  }

  async follow(signal) {
    while (!signal.aborted) {
      try {
        await this.readStream(signal);
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status === 401) return; // the session ended
      }
      this.live = false;
      await sleep(3000, signal);
    }
  }

  async readStream(signal) {
    const token = readSession()?.token;
    if (!token) return;
    const response = await fetch("/v1/alarms/stream", {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      signal,
    });
    if (!response.ok) throw new ApiError(response.status, "stream", `HTTP ${response.status}`);
    this.live = true;
    this.changed();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replaceAll("\r\n", "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this.dispatch(parseServerEvent(buffer.slice(0, end)));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  dispatch(event) {
    if (event.type !== "alarm" || !event.data) return;
    try {
      this.put(JSON.parse(event.data));
    } catch {
      // not an alarm: ignored
    }
  }
}

// One block of text/event-stream: its event type and data lines (comments dropped).
function parseServerEvent(block) {
  const event = { type: "message", data: "" };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.type = value;
    else if (field === "data") data.push(value);
  }
  event.data = data.join("\n");
  return event;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

const alarmFeed = new AlarmFeed();

// ---------------------------------------------------------------------------------------
// view: settings

async function showSettings(signal) {
  show(signal, loading("Settings"));
  let facts = null;
  try {
    facts = await chainFacts();
  } catch (error) {
    flash(`Could not read /v1/chain: ${error.message}`);
  }
  const own = localStorage.getItem(RPC_KEY) ?? "";
  const input = h("input", {
    type: "url",
    id: "rpc-url",
    name: "rpc",
    value: own,
    placeholder: facts?.rpc_url ?? "https://your-node.example:8545",
    spellcheck: "false",
  });
  const status = h("p", {
    class: "status",
    id: "rpc-status",
    role: "status",
    "aria-live": "polite",
  });
  const save = (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value && !/^https?:\/\//.test(value)) {
      status.textContent = "A JSON-RPC URL starts with http:// or https://.";
      return;
    }
    if (value) localStorage.setItem(RPC_KEY, value);
    else localStorage.removeItem(RPC_KEY);
    status.textContent = value
      ? `Proofs will be checked against ${value}.`
      : "Using the deployment's node.";
  };
  const reset = () => {
    input.value = "";
    localStorage.removeItem(RPC_KEY);
    status.textContent = "Using the deployment's node.";
  };
  const test = async () => {
    const url = input.value.trim() || facts?.rpc_url;
    if (!url) {
      status.textContent = "No node to test.";
      return;
    }
    status.textContent = `Asking ${url}…`;
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      });
      const chainId = Number(BigInt((await response.json()).result));
      const agrees = facts ? chainId === facts.chain_id : true;
      status.textContent = agrees
        ? `✓ ${url} is chain ${chainId}.`
        : `✗ ${url} is chain ${chainId}, not ${facts.chain_id}.`;
    } catch (error) {
      status.textContent = `✗ Cannot reach ${url}: ${error.message}`;
    }
  };
  const contracts = Object.entries(facts?.contracts ?? {});
  show(
    signal,
    h("h1", "Settings"),
    h(
      "form",
      { class: "panel", onsubmit: save },
      h("h2", "Where proofs are checked"),
      h("label", { for: "rpc-url" }, "JSON-RPC URL of an Ethereum node"),
      input,
      h(
        "p",
        { class: "muted" },
        "Verify buttons ask this node, from your browser, " +
          "whether each proof's anchor or log is on the chain. " +
          "Use your own node to trust nothing of ours. Empty: the deployment's node, ",
        h("code", facts?.rpc_url ?? "none configured"),
        ". Kept in this browser only.",
      ),
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit", class: "primary" }, "Save"),
        h("button", { type: "button", onclick: reset }, "Use the deployment's node"),
        h("button", { type: "button", onclick: test }, "Test the node"),
      ),
      status,
    ),
    facts
      ? h(
          "section",
          { class: "panel" },
          h("h2", "This deployment"),
          h(
            "p",
            { class: "muted" },
            "As this server reports it: compare with the deployment manifest you were given.",
          ),
          fields(
            ["Chain id", String(facts.chain_id), "chain-id"],
            ...contracts.map(([name, address]) => [name, h("code", address), `contract-${name}`]),
          ),
        )
      : null,
  );
}

// ---------------------------------------------------------------------------------------
// start

function boot() {
  $("#sign-out").addEventListener("click", () => endSession("Signed out."));
  window.addEventListener("hashchange", () => {
    route();
    // a new view: start at its top, and let screen readers know where they are
    window.scrollTo(0, 0);
    $("#view").focus({ preventScroll: true });
  });
  showSessionHeader();
  if (readSession()) alarmFeed.start();
  route();
}

boot();
