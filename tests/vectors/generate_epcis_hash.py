"""Write tests/vectors/epcis_hash.json: the event hash vectors and what other tools make of them.

    .venv/bin/python tests/vectors/generate_epcis_hash.py --force \\
        [--ehg-python /tmp/ehg-venv/bin/python] [--epcis2js /tmp/epcis2js]

For every EPCIS document in tests/vectors/epcis/ (one event each) this records fourflow's
pre-hash string and hash ID (oracles.epcis.event_hash) and, when the tools are given, what
two public implementations compute for the same document:

    --ehg-python  a Python interpreter that has the PyPI package
                  epcis-event-hash-generator 1.9.3 installed (e.g. a scratch venv in /tmp);
                  its json_to_py + hash_generator give a pre-hash and a hash ID
    --epcis2js    a directory whose node_modules holds the npm package epcis2.js 2.7.3;
                  its public eventToHashedId(event, context) gives a hash ID

A tool that is not given keeps the result recorded for an unchanged document, or is
recorded as "not run". The Java openepcis-event-hash-generator cannot be run here (its
build needs Maven Central); each case records what reading its source predicts.

Nothing from those tools is committed or needed by the tests: tests/unit compares only
fourflow's own output with the recorded pre-hash and hash. Regenerating with changed
fourflow output is a format change of the event identity; do it only on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from oracles.epcis.event_hash import event_hash_id, prehash_string

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "epcis"
OUTPUT = HERE / "epcis_hash.json"
EHG = "epcis-event-hash-generator"
EPCIS2JS = "epcis2.js"
OPENEPCIS = "openepcis-event-hash-generator"

# name -> (equivalence group, what the case covers, what reading openepcis' source predicts)
_AGREES = "agrees, by reading its source"
_NO_CERTIFICATION = "differs: certificationInfo is in its DEFAULT_FIELDS_TO_EXCLUDE_IN_PREHASH"
_NESTED_AT_END = (
    "differs: in CBV 2.0 mode it moves extensions inside readPoint, sensorElement, "
    "sensorMetadata and sensorReport to the end of the pre-hash"
)
CASES: dict[str, tuple[str, str, str]] = {
    "object-steel-coils-commissioning-urn": (
        "steel-coils-commissioning",
        "ObjectEvent ADD commissioning: SGTIN URNs with %2F in the serial, SGLN readPoint with "
        "an extension, SGLN .0 bizLocation, CBV 1.x URNs, certificationInfo, ILMD with a nested "
        "object, a number and a cbvmda field, eventTime +08:00, eventID and recordTime",
        _NO_CERTIFICATION,
    ),
    "object-steel-coils-commissioning-dl": (
        "steel-coils-commissioning",
        "the same event with keys and lists reordered, Digital Links on other hosts and on "
        "id.gs1.org (GTIN-13, lot + serial, a query string, lower-case %2f), bare and web-URI CBV "
        "values, eventTime in UTC with four decimals (.1235 rounds to .124), 24.60 for 24.6",
        _NO_CERTIFICATION + "; its appendInstant(3) truncates .1235 to .123; shortNameReplacer "
        "swaps the host but keeps the GTIN-13, the lot, the query string and %2f",
    ),
    "object-pallets-shipping-handoff-urn": (
        "pallets-shipping-handoff",
        "ObjectEvent OBSERVE shipping: SSCC URNs; a handoff with three sources and three "
        "destinations (owning_party, possessing_party, location) whose type and id come in "
        "either key order; bizTransactionList po + desadv with GDTI URNs; eventTime -05:00",
        _AGREES + " (18-digit SSCC, type before id, sourceList before destinationList)",
    ),
    "object-pallets-shipping-handoff-dl": (
        "pallets-shipping-handoff",
        "the same event with SSCC, party GLN, GLN and GDTI Digital Links (one on a carrier's "
        "host, one SGLN written /254/0), bare CBV words, keys and lists reordered, UTC time",
        "differs: shortNameReplacer keeps .../414/6901234000016/254/0 as written",
    ),
    "aggregation-pallet-packing": (
        "aggregation-pallet-packing",
        "AggregationEvent ADD packing: parentID SSCC, childEPCs SGTINs, childQuantityList with "
        "an LGTIN class and an SGTIN pattern without uom",
        _AGREES,
    ),
    "transaction-coils-invoiced": (
        "transaction-coils-invoiced",
        "TransactionEvent ADD accepting with parentID and epcList (epcList comes first), "
        "bizTransactionList inv (a CBV bt URN, no GS1 key) + po, quantityList 120.0 KGM, "
        "eventTime without decimals",
        _AGREES + " (epcList before parentID in its TemplateNodeMap)",
    ),
    "transformation-dairy-cheese": (
        "transformation-dairy-cheese",
        "TransformationEvent: inputEPCList starter-culture totes, inputQuantityList milk and salt lots with fractional quantities, "
        "outputEPCList cheese SGTINs, outputQuantityList whey, transformationID GDTI, ILMD with "
        "cbvmda dates, a number and a string",
        _AGREES,
    ),
    "association-sensor-to-trailer": (
        "association-sensor-to-trailer",
        "AssociationEvent ADD assembling: trailer GIAI parent, logger GIAI children",
        _AGREES,
    ),
    "object-cold-chain-sensor-reports": (
        "cold-chain-sensor-reports",
        "ObjectEvent sensor_reporting: two sensorElements; sensorMetadata with every attribute "
        "and an extension; nine sensorReports using type (CURIE and bare), exception, time, "
        "value, minValue, maxValue, meanValue, sDev, percRank, percValue, component (bare and "
        "CURIE), coordinateReferenceSystem, booleanValue, stringValue, hexBinaryValue, uriValue, "
        "microorganism, chemicalSubstance, deviceID; extensions in sensorReport and "
        "sensorElement; eventTime .9996 rounding into the next second",
        _NESTED_AT_END + "; it writes no sensorElementList label in CBV 2.0 mode; "
        "cbv:Comp-longitude stays a CURIE; .9996 is truncated to .999",
    ),
    "object-recall-persistent-disposition": (
        "recall-persistent-disposition",
        "persistentDisposition set (bare word and CBV URN) and unset (web URI); quantityList "
        "with a Digital Link class; bizLocation SGLN",
        _AGREES,
    ),
    "object-herd-count-extensions": (
        "herd-count",
        "private ear-tag URNs (no GS1 key, kept); an event-level @context declaring a prefix; a "
        "private disposition as a CURIE; a readPoint extension; top-level extensions: integer, "
        "float, whole float, boolean, nested object with GS1 keys, list with a duplicate, empty "
        "string, CURIE value",
        _NESTED_AT_END + "; how it reads an event-level @context is not in this repository",
    ),
    "object-herd-count-error-declared": (
        "herd-count",
        "the same event as an error declaration re-sends it: errorDeclaration, another eventID, "
        "recordTime and rdfs:comment (none hashed), all prefixes in the document @context, "
        "CURIEs written out, Digital Links, 3 for 3.0 and 3.0 for 3",
        _NESTED_AT_END,
    ),
    "object-gs1-keys-inspection-urn": (
        "gs1-keys-inspection",
        "every GS1 EPC scheme: sgtin with ' ( ) ! * in the serial, sscc, grai with %2F, giai "
        "with : and ;, gsrn, gsrnp, gdti, sgcn, cpi with %23 %2F, ginc with %26, gsin, itip "
        "with =, upui with %3F, pgln; an LGTIN with %25 and +; idpat sgtin, grai, itip, cpi, "
        "gdti, sgcn",
        "not predictable here: openepcis-epc-digitallink-translator's per-scheme converters "
        "decide how ' ( ) ! * : ; = are written",
    ),
    "object-gs1-keys-inspection-dl": (
        "gs1-keys-inspection",
        "the same keys as Digital Links: AI short names (sscc, gdti), http, other hosts with "
        "path prefixes, GTIN-13, a query string, lower-case %3f, qualifiers to drop (22, 8019); "
        "a CURIE bizStep and a CBV URN disposition",
        "differs: shortNameReplacer keeps the /22/ and /8019/ qualifiers, the GTIN-13 and the "
        "query string; the CURIE bizStep is not expanded",
    ),
}

_EHG_SCRIPT = """
import json, logging, sys
from importlib.metadata import version
logging.disable(logging.CRITICAL)
from epcis_event_hash_generator import hash_generator, json_to_py
doc = json.load(sys.stdin)
try:
    events = json_to_py.event_list_from_epcis_document_json(doc)
    pre = hash_generator.derive_prehashes_from_events(events)
    out = {"prehash": pre[0], "hash": hash_generator.calculate_hashes_from_pre_hashes(pre)[0]}
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {exc}"}
out["version"] = version("epcis-event-hash-generator")
json.dump(out, sys.stdout)
"""

_EPCIS2JS_SCRIPT = """
const { eventToHashedId } = require('epcis2.js');
const version = require('epcis2.js/package.json').version;
let data = '';
process.stdin.on('data', (chunk) => { data += chunk; });
process.stdin.on('end', () => {
  const { event, context } = JSON.parse(data);
  let out;
  try { out = { hash: eventToHashedId(event, context) }; }
  catch (e) { out = { error: String((e && e.message) || e) }; }
  out.version = version;
  process.stdout.write(JSON.stringify(out));
});
"""


def _run(command: list[str], stdin: str, cwd: Path | None = None) -> dict[str, Any]:
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _first_difference(ours: str, theirs: str) -> str:
    index = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
        min(len(ours), len(theirs)),
    )
    return f"at character {index}: ours {ours[index : index + 60]!r}, theirs {theirs[index : index + 60]!r}"


def _compare(ours: dict[str, str], theirs: dict[str, Any]) -> dict[str, Any]:
    record = dict(theirs)
    if "hash" in theirs:
        record["agrees"] = theirs["hash"] == ours["hash"]
        if "prehash" in theirs and not record["agrees"]:
            record["first_difference"] = _first_difference(ours["prehash"], theirs["prehash"])
    else:
        record["agrees"] = False
    return record


def build(args: argparse.Namespace, previous: dict[str, Any]) -> dict[str, Any]:
    old_cases = {case["name"]: case for case in previous.get("cases", [])}
    cases = []
    for path in sorted(CASES_DIR.glob("*.json")):
        name = path.stem
        if name not in CASES:
            raise SystemExit(f"{path} has no entry in CASES")
        group, covers, openepcis = CASES[name]
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
        (event,) = document["epcisBody"]["eventList"]
        context = document.get("@context")
        ours = {
            "prehash": prehash_string(event, context=context),
            "hash": event_hash_id(event, context=context),
        }
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        old = old_cases.get(name, {})
        old_refs = old.get("references", {}) if old.get("document_sha256") == digest else {}
        not_run = {"ran": False, "note": "not run"}
        refs: dict[str, Any] = {}
        if args.ehg_python:
            refs[EHG] = _compare(ours, _run([args.ehg_python, "-c", _EHG_SCRIPT], text))
        else:
            refs[EHG] = old_refs.get(EHG, not_run)
        if args.epcis2js:
            stdin = json.dumps({"event": event, "context": context})
            found = _run(["node", "-e", _EPCIS2JS_SCRIPT], stdin, cwd=Path(args.epcis2js))
            refs[EPCIS2JS] = _compare(ours, found)
        else:
            refs[EPCIS2JS] = old_refs.get(EPCIS2JS, not_run)
        refs[OPENEPCIS] = {
            "ran": False,
            "note": "not run (Maven Central unreachable)",
            "expected_from_source": openepcis,
        }
        cases.append(
            {
                "name": name,
                "file": f"epcis/{path.name}",
                "document_sha256": digest,
                "same_event_as": group,
                "covers": covers,
                **ours,
                "references": refs,
            }
        )
    return {
        "comment": "generated by tests/vectors/generate_epcis_hash.py; do not edit by hand",
        "algorithm": "GS1 CBV 2.0 EPCIS Event Hash ID as fourflow implements it "
        "(docs/epcis-event-hash.md)",
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite the existing file")
    parser.add_argument("--ehg-python", help="python with epcis-event-hash-generator 1.9.3")
    parser.add_argument("--epcis2js", help="directory with node_modules/epcis2.js 2.7.3")
    args = parser.parse_args(argv)
    if OUTPUT.exists() and not args.force:
        print(f"refusing to overwrite {OUTPUT} (use --force)", file=sys.stderr)
        return 1
    previous = json.loads(OUTPUT.read_text(encoding="utf-8")) if OUTPUT.exists() else {}
    data = build(args, previous)
    OUTPUT.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
