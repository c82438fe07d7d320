// DOM and formatting helpers for the dashboard: elements built from data as text only
// (text nodes and attributes, never markup), and the ways numbers, times, money and
// addresses are shown.

function isChild(value) {
  return (
    value instanceof Node || typeof value !== "object" || value === null || Array.isArray(value)
  );
}

// h("p", {class: "note"}, "text", child): strings become text nodes, never markup.
// Props: on<Event> functions become listeners, `dataset` fills data-*, true sets a
// boolean attribute, null / undefined / false are left out, the rest are attributes.
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

function build(node, props, children) {
  if (isChild(props)) {
    children.unshift(props);
    props = {};
  }
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});

export function clip(text, length) {
  const value = String(text);
  return value.length > length ? `${value.slice(0, length - 1)}…` : value;
}

// the tail of a long identifier, which is where GS1 URIs and URNs differ
export function clipStart(text, length) {
  const value = String(text);
  return value.length > length ? `…${value.slice(-(length - 1))}` : value;
}

export function shortHex(hex) {
  return typeof hex === "string" && hex.length > 14 ? `${hex.slice(0, 6)}…${hex.slice(-4)}` : hex;
}

export function addressNode(address) {
  if (!address) return h("span", { class: "muted" }, "—");
  return h("code", { class: "address", title: address }, shortHex(address));
}

export function timeNode(when) {
  if (when === null || when === undefined) return h("span", { class: "muted" }, "—");
  const date = new Date(when);
  return h("time", { datetime: date.toISOString() }, dateTimeFormat.format(date));
}

// Amounts travel in minor units (fen, cents) as integers. Formatted exactly: the decimal
// point is placed in the digit string, and Intl formats the decimal string.
export function money(minor, currency) {
  if (minor === null || minor === undefined) return "—";
  let format;
  try {
    format = new Intl.NumberFormat(undefined, { style: "currency", currency });
  } catch {
    return `${minor} ${currency} (minor units)`;
  }
  if (!Number.isSafeInteger(minor)) return `${minor} ${currency} (minor units)`;
  const digits = format.resolvedOptions().maximumFractionDigits;
  const sign = minor < 0 ? "-" : "";
  const text = String(Math.abs(minor)).padStart(digits + 1, "0");
  const decimal = digits ? `${text.slice(0, -digits)}.${text.slice(-digits)}` : text;
  return format.format(sign + decimal);
}

export function confidence(value) {
  return typeof value === "number" ? ` · confidence ${(value * 100).toFixed(1)} %` : "";
}

export function percentOfBps(bps) {
  return `${(bps / 100).toFixed(2)} %`;
}

export function badge(text, kind, title) {
  return h("span", { class: `badge ${kind}`, title }, text);
}

export function humanize(name) {
  return String(name).replaceAll("_", " ");
}

export function check(ok, yes, no) {
  return h("span", { class: ok ? "good" : "bad" }, ok ? `✓ ${yes}` : `✗ ${no}`);
}
