// The count or stock line of a pledge's goods against the covenant minimum, drawn as an
// inline SVG: a time axis, a quantity axis, the minimum as a dashed line, the booked
// quantity dotted, and each count a point (larger and red when below the minimum). The
// same counts follow as a table, for screen readers and for copying.

import { check, confidence, dateTimeFormat, h, humanize, money, s, timeNode } from "./dom.js";

const HOUR_MS = 3_600_000;

const axisTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

function niceStep(span, count) {
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  const nice = normalized <= 1 ? 1 : normalized <= 2 ? 2 : normalized <= 5 ? 5 : 10;
  return nice * magnitude;
}

function pointTitle(point, unit, below) {
  const when = dateTimeFormat.format(new Date(point.time_ms));
  const mark = below ? " (below the minimum)" : "";
  return `${when}: ${point.quantity} ${unit}${mark} · ${point.method}`;
}

export function chartSection(quantity) {
  const unit = quantity?.unit ?? "items";
  return h(
    "section",
    { class: "panel", "aria-labelledby": "chart-heading" },
    h("h2", { id: "chart-heading" }, `Count of ${unit} against the covenant minimum`),
    quantityChart(quantity),
  );
}

function quantityChart(quantity) {
  const trend = quantity?.trend ?? [];
  if (!trend.length) return h("p", { class: "muted", id: "no-chart" }, "No counts reported yet.");
  const { unit, minimum, booked } = quantity;
  const W = 760;
  const H = 280;
  const M = { left: 52, right: 110, top: 26, bottom: 40 };

  const times = trend.map((p) => p.time_ms);
  let [t0, t1] = [Math.min(...times), Math.max(...times)];
  if (t1 - t0 < HOUR_MS) [t0, t1] = [t0 - HOUR_MS, t1 + HOUR_MS]; // one point: widen the axis
  const highest = Math.max(...trend.map((p) => p.quantity), minimum ?? 0, booked ?? 0, 1);
  const step = niceStep(highest * 1.1, 5);
  const top = Math.ceil((highest * 1.1) / step) * step;
  const x = (t) => M.left + ((t - t0) / (t1 - t0)) * (W - M.left - M.right);
  const y = (q) => H - M.bottom - (q / top) * (H - M.top - M.bottom);
  const below = (p) => minimum !== null && minimum !== undefined && p.quantity < minimum;

  const yTicks = [];
  for (let q = 0; q <= top + step / 2; q += step) yTicks.push(q);
  const xTicks = Array.from({ length: 5 }, (_, i) => t0 + ((t1 - t0) * i) / 4);
  const latest = trend[trend.length - 1];
  const belowCount = trend.filter(below).length;

  const svg = s(
    "svg",
    {
      class: "chart",
      id: "quantity-chart",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-labelledby": "chart-title chart-desc",
    },
    s("title", { id: "chart-title" }, `Count of ${unit} over time`),
    s(
      "desc",
      { id: "chart-desc" },
      `${trend.length} counts; latest ${latest.quantity} ${unit}; ` +
        `covenant minimum ${minimum ?? "none"}; ` +
        `${belowCount} count${belowCount === 1 ? "" : "s"} below the minimum.`,
    ),
    s(
      "g",
      { class: "axis y-axis" },
      yTicks.map((q) => [
        s("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(q), y2: y(q) }),
        s("text", { x: M.left - 8, y: y(q) + 4, "text-anchor": "end" }, String(q)),
      ]),
      s("text", { class: "axis-label", x: M.left - 8, y: 12, "text-anchor": "end" }, unit),
    ),
    s(
      "g",
      { class: "axis x-axis" },
      s("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }),
      xTicks.map((t) => [
        s("line", { x1: x(t), x2: x(t), y1: H - M.bottom, y2: H - M.bottom + 5 }),
        s(
          "text",
          { x: x(t), y: H - M.bottom + 20, "text-anchor": "middle" },
          axisTimeFormat.format(new Date(t)),
        ),
      ]),
    ),
    booked === null || booked === undefined
      ? null
      : [
          s("line", {
            class: "booked",
            x1: M.left,
            x2: W - M.right,
            y1: y(booked),
            y2: y(booked),
            "stroke-dasharray": "2 4",
          }),
          s(
            "text",
            { class: "booked-label", x: W - M.right + 6, y: y(booked) + 4 },
            `booked ${booked}`,
          ),
        ],
    minimum === null || minimum === undefined
      ? null
      : [
          s("line", {
            class: "minimum",
            x1: M.left,
            x2: W - M.right,
            y1: y(minimum),
            y2: y(minimum),
            "stroke-dasharray": "6 4",
          }),
          s(
            "text",
            { class: "minimum-label", x: W - M.right + 6, y: y(minimum) + 4 },
            `minimum ${minimum}`,
          ),
        ],
    s("polyline", {
      class: "series",
      points: trend.map((p) => `${x(p.time_ms).toFixed(1)},${y(p.quantity).toFixed(1)}`).join(" "),
    }),
    s(
      "g",
      { class: "points" },
      trend.map((p) =>
        s(
          "circle",
          {
            class: below(p) ? "point below" : "point",
            cx: x(p.time_ms).toFixed(1),
            cy: y(p.quantity).toFixed(1),
            r: below(p) ? 6 : 4,
            "data-quantity": p.quantity,
          },
          s("title", pointTitle(p, unit, below(p))),
        ),
      ),
    ),
  );
  return h(
    "figure",
    { class: "chart-figure" },
    svg,
    h(
      "figcaption",
      h("span", { class: "key series-key" }, "counts"),
      h("span", { class: "key minimum-key" }, "covenant minimum"),
      h("span", { class: "key booked-key" }, "booked on the receipt"),
      h("span", { class: "key below-key" }, "below the minimum"),
    ),
    h(
      "details",
      h("summary", "The counts as a table"),
      h(
        "table",
        { class: "compact" },
        h(
          "thead",
          h(
            "tr",
            ["Time", "Quantity", "Source", "Method", "Confidence"].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        h(
          "tbody",
          trend.map((p) =>
            h(
              "tr",
              h("td", timeNode(p.time_ms)),
              h(
                "td",
                { class: "num" },
                below(p) ? check(false, "", String(p.quantity)) : String(p.quantity),
              ),
              h("td", p.source),
              h("td", humanize(p.method)),
              h(
                "td",
                { class: "num" },
                confidence(p.confidence).replace(" · confidence ", "") || "—",
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------
// A site's daily series (the history summary's operations block): one small chart per
// figure, a point per closed local day, the unit on the value axis as the API states it
// (money in the currency's major unit: the API sends minor units and the currency), a
// gap where a day has no figure. The values follow as a table, as above.

function fractionDigits(currency) {
  try {
    const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    return format.resolvedOptions().maximumFractionDigits;
  } catch {
    return 0;
  }
}

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4 });
const signedFormat = new Intl.NumberFormat(undefined, {
  maximumFractionDigits: 4,
  signDisplay: "exceptZero",
});

// A figure as text with its unit: "91.81 %", "13 704 pieces", "¥4,382.15".
export function figureText(value, line) {
  if (value === null || value === undefined) return "—";
  if (line.currency) return money(value, line.currency);
  const unit = line.unit === "1" ? "" : (line.unit ?? ""); // UCUM's 1: a plain number
  return `${numberFormat.format(value)} ${unit}`.trim();
}

// A difference: "+12,842 pieces", "-3.5 %", "0 kWh".
export function differenceText(value, unit) {
  if (value === null || value === undefined) return "—";
  return `${signedFormat.format(value)} ${unit ?? ""}`.trim();
}

function tickText(value) {
  return numberFormat.format(Math.round(value * 1000) / 1000);
}

export function dailyChart(line, days, id) {
  const scale = line.currency ? 10 ** fractionDigits(line.currency) : 1;
  const axisUnit = line.currency ?? line.unit;
  const values = line.values.map((v) => (v === null || v === undefined ? null : v / scale));
  const known = values.filter((v) => v !== null);
  const W = 380;
  const H = 210;
  const M = { left: 58, right: 14, top: 26, bottom: 42 };
  const low = Math.min(0, ...known);
  const high = Math.max(...known, low + 1e-9);
  const step = niceStep((high - low) * 1.1 || 1, 4);
  const bottom = Math.floor(low / step) * step;
  const top = Math.max(Math.ceil((high * 1.05) / step) * step, bottom + step);
  const x = (i) =>
    days.length === 1
      ? (M.left + W - M.right) / 2
      : M.left + (i / (days.length - 1)) * (W - M.left - M.right);
  const y = (v) => H - M.bottom - ((v - bottom) / (top - bottom)) * (H - M.top - M.bottom);
  const yTicks = [];
  for (let v = bottom; v <= top + step / 2; v += step) yTicks.push(v);
  const shown =
    days.length <= 7
      ? days.map((_, i) => i)
      : [0, Math.floor(days.length / 2), days.length - 1];
  // a polyline per run of days with a figure: a missing day is a gap, not a zero
  const runs = [];
  let run = [];
  values.forEach((v, i) => {
    if (v === null) {
      if (run.length) runs.push(run);
      run = [];
    } else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  if (run.length) runs.push(run);
  // the outer dates end at the plot's edges rather than past them
  const tickAnchor = (i) =>
    days.length === 1 ? "middle" : i === 0 ? "start" : i === days.length - 1 ? "end" : "middle";
  const title = `${line.label} per day, in ${axisUnit}`;
  return h(
    "figure",
    { class: "chart-figure daily", dataset: { metric: line.metric } },
    s(
      "svg",
      {
        class: "chart daily-chart",
        id,
        viewBox: `0 0 ${W} ${H}`,
        role: "img",
        "aria-labelledby": `${id}-title ${id}-desc`,
      },
      s("title", { id: `${id}-title` }, title),
      s(
        "desc",
        { id: `${id}-desc` },
        `${known.length} of ${days.length} days with a figure; latest ` +
          `${figureText(line.latest, line)}.`,
      ),
      s(
        "g",
        { class: "axis y-axis" },
        yTicks.map((v) => [
          s("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }),
          s("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, tickText(v)),
        ]),
        s("text", { class: "axis-label y-label", x: 4, y: 14 }, axisUnit),
      ),
      s(
        "g",
        { class: "axis x-axis" },
        s("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }),
        shown.map((i) => [
          s("line", { x1: x(i), x2: x(i), y1: H - M.bottom, y2: H - M.bottom + 4 }),
          s("text", { x: x(i), y: H - M.bottom + 17, "text-anchor": tickAnchor(i) }, days[i]),
        ]),
        s(
          "text",
          {
            class: "axis-label x-label",
            x: (M.left + W - M.right) / 2,
            y: H - 4,
            "text-anchor": "middle",
          },
          "local day",
        ),
      ),
      runs.map((points) => s("polyline", { class: "series", points: points.join(" ") })),
      s(
        "g",
        { class: "points" },
        values.map((v, i) =>
          v === null
            ? null
            : s(
                "circle",
                {
                  class: "point",
                  cx: x(i).toFixed(1),
                  cy: y(v).toFixed(1),
                  r: 3.5,
                  "data-day": days[i],
                },
                s("title", `${days[i]}: ${figureText(line.values[i], line)}`),
              ),
        ),
      ),
    ),
    h("figcaption", h("span", h("strong", line.label), ` · ${axisUnit}`)),
  );
}
