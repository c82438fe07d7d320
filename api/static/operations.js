// The other industries' days: a panel per site of the history summary's operations block
// (a plant, a solar plant, a charging station, a dealer's floor plan, a telemetry asset),
// with the latest day's figures and a chart per daily series, and a panel of the
// verdicts on the borrower's declarations, a breach highlighted. Units and currencies
// are the API's: nothing here guesses one. Each site and verdict names the submitter who
// recorded it (the oracle's gateway is one submitter among the admitted parties).

import { dailyChart, differenceText, figureText } from "./chart.js";
import { addressNode, badge, check, clipStart, h, humanize, timeNode } from "./dom.js";

const INDUSTRY_TITLES = {
  manufacturing: "Plant",
  solar: "Solar plant",
  charging: "Charging station",
  vehicles: "Dealer floor plan",
  telemetry: "Telemetry",
};
const QUESTIONS = {
  manufacturing: "Are the machines working, and what do they make?",
  solar: "How much did the plant generate and earn?",
  charging: "How much did the station charge and earn?",
  vehicles: "Are the financed vehicles on the lot, their papers and keys in the safe?",
  telemetry: "What did the sensors measure, day by day?",
};

export function operationsSections(operations) {
  const sites = operations?.sites ?? [];
  const checks = operations?.checks ?? [];
  const panels = sites.map((site, i) => sitePanel(site, i));
  return [...panels, checks.length ? checksPanel(checks) : null];
}

function sitePanel(site, index) {
  const heading = `ops-heading-${index}`;
  const title = INDUSTRY_TITLES[site.industry] ?? humanize(site.industry);
  const groups = new Map(); // telemetry: the series of one measured subject and schema
  for (const line of site.series) {
    const key = line.measured ? `${line.measured} · ${line.schema}` : "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(line);
  }
  let chartNumber = 0;
  return h(
    "section",
    {
      class: "panel operations",
      "aria-labelledby": heading,
      dataset: { industry: site.industry, subject: site.subject },
    },
    h(
      "h2",
      { id: heading },
      `${title} `,
      h("code", { class: "subject", title: site.subject }, clipStart(site.subject, 48)),
    ),
    h("p", { class: "question" }, QUESTIONS[site.industry] ?? ""),
    h(
      "p",
      { class: "muted", "data-field": "days" },
      `${site.days.length} closed day${site.days.length === 1 ? "" : "s"}, the latest `,
      h("strong", site.latest.day),
      " (recorded ",
      timeNode(site.latest.time),
      ")",
    ),
    h(
      "p",
      { class: "muted", "data-field": "recorded-by" },
      "recorded by ",
      addressNode(site.recorded_by),
    ),
    [...groups].map(([group, lines]) => [
      group ? h("h3", { class: "series-group" }, h("code", clipStart(group, 64))) : null,
      h(
        "dl",
        { class: "latest-figures" },
        lines.map((line) =>
          h(
            "div",
            { class: "figure" },
            h("dt", line.label),
            h("dd", { dataset: { metric: line.metric } }, figureText(line.latest, line)),
          ),
        ),
      ),
      h(
        "div",
        { class: "daily-charts" },
        lines.map((line) => dailyChart(line, site.days, `ops-${index}-${chartNumber++}`)),
      ),
    ]),
  );
}

function checksPanel(checks) {
  const breaches = checks.filter((c) => c.breach).length;
  return h(
    "section",
    { class: "panel operations-checks", "aria-labelledby": "checks-heading" },
    h("h2", { id: "checks-heading" }, "Declarations checked against the devices"),
    h(
      "p",
      { class: "question" },
      "Do the borrower's own figures agree with what the devices saw?",
    ),
    h(
      "p",
      { "data-field": "check-summary" },
      check(
        breaches === 0,
        "no declaration overstated",
        `${breaches} declaration${breaches === 1 ? "" : "s"} overstated`,
      ),
    ),
    h(
      "table",
      { class: "compact checks" },
      h(
        "thead",
        h(
          "tr",
          [
            "Checked",
            "Metric",
            "Period",
            "Declared",
            "Observed",
            "Difference",
            "Verdict",
            "Recorded by",
          ].map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      h(
        "tbody",
        checks.map((c) =>
          h(
            "tr",
            {
              class: c.breach ? "breach" : c.severity ? "warning" : null,
              dataset: { status: c.status, declaration: c.declaration },
            },
            h("td", { class: "when" }, timeNode(c.time)),
            h("td", c.metric ? humanize(c.metric) : "—"),
            h("td", `${c.period?.from ?? "?"} – ${c.period?.to ?? "?"}`),
            h("td", { class: "num" }, figureText(c.declared, { unit: c.declared_unit })),
            h("td", { class: "num" }, figureText(c.observed, { unit: c.observed_unit })),
            h(
              "td",
              { class: "num" },
              differenceText(c.difference, c.declared_unit),
              c.difference_pct === null || c.difference_pct === undefined
                ? null
                : ` (${differenceText(Math.round(c.difference_pct * 10) / 10, "%")})`,
            ),
            h(
              "td",
              badge(
                c.status ? humanize(c.status) : "no verdict",
                `verdict verdict-${c.breach ? "breach" : (c.severity ?? "ok")}`,
                c.severity ? `${c.severity}: tolerance ${c.tolerance_pct} %` : null,
              ),
            ),
            h("td", { "data-field": "recorded-by" }, addressNode(c.recorded_by)),
          ),
        ),
      ),
    ),
  );
}
