"""The GS1 EPCIS Event Hash ID (CBV 2.0): one ID for one event, in any spelling.

    pre-hash = the event's fields, normalised, in the canonical property order below,
               each written ``name=value`` (a structure or list: its name, then its
               parts), concatenated with no separator
    hash ID  = "ni:///sha-256;" lower-hex(sha256(utf8(pre-hash))) "?ver=CBV2.0"  (RFC 6920)

Canonical property order (the CBV 2.0 "EPCIS Event Hash ID" algorithm, its table of the
canonical property order; docs/epcis-event-hash.md says where the standard is ambiguous
and what fourflow chose):

     1 eventType   2 eventTime   3 eventTimeZoneOffset   4 certificationInfo
     5 epcList-epc   6 parentID   7 inputEPCList-epc   8 childEPCs-epc
     9 quantityList   10 childQuantityList   11 inputQuantityList  (each element
       "quantityElement" epcClass quantity uom)   12 outputEPCList-epc
    13 outputQuantityList   14 action   15 transformationID   16 bizStep
    17 disposition   18 persistentDisposition (set, unset)   19 readPoint (id)
    20 bizLocation (id)   21 bizTransactionList (type, bizTransaction)
    22 sourceList (type, source)   23 destinationList (type, destination)
    24 sensorElementList-sensorElement (sensorMetadata (time startTime endTime deviceID
       deviceMetadata rawData dataProcessingMethod bizRules), sensorReport (type exception
       deviceID deviceMetadata rawData dataProcessingMethod time microorganism
       chemicalSubstance value component stringValue booleanValue hexBinaryValue uriValue
       minValue maxValue meanValue sDev percRank percValue uom coordinateReferenceSystem))
    25 ilmd   26 user extensions

Normalisation:

- not hashed: eventID, recordTime, errorDeclaration, rdfs:comment / comment, @context;
- an omitted field, an empty list and an empty structure add nothing;
- the elements of every list are written each on its own and then sorted by code point
  (the same order as UTF-8 bytes); a list's name appears once, before its elements;
- strings are stripped of surrounding whitespace; numbers are written in plain decimal
  without trailing zeros (1.0 -> 1, 0.50 -> 0.5); booleans as true / false;
- timestamps (eventTime, sensor time, startTime, endTime) become UTC with exactly three
  decimals and a "Z", the fourth decimal rounding half up;
- GS1 keys (EPC URIs, Digital Link URIs on any host) become canonical Digital Link URIs
  (oracles.epcis.gs1); urn:epcglobal:cbv:{bizstep,disp,btt,sdt,er}: URNs and bare CBV
  words become https://ref.gs1.org/cbv/ URIs; bare sensor types and exceptions become
  https://gs1.org/voc/ URIs and bare components https://ref.gs1.org/cbv/Comp- URIs;
  a CURIE whose prefix the EPCIS context or the document declares is expanded;
- a user extension field is written ``{namespace IRI}localName`` and ``=value`` if it has
  a value, or followed by its own sorted children if it is an object; a list value gives
  one such entry per element. Extensions inside a structure (readPoint, bizLocation,
  sensorElement, sensorMetadata, sensorReport, ...) follow that structure's standard
  fields; ILMD entries and top-level extensions are sorted.

Bad input raises ``InvalidInput`` (code ``invalid_event``, or ``invalid_identifier`` for
a GS1 key) whose message starts with the JSON pointer of the offending value.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from ledger.errors import InvalidInput
from oracles.epcis import cbv
from oracles.epcis.gs1 import normalise_identifier

__all__ = [
    "EPCIS_PREFIXES",
    "EVENT_TYPES",
    "HASH_VERSION",
    "event_hash_id",
    "prehash_string",
    "utc_timestamp",
]

HASH_VERSION: Final = "CBV2.0"
EVENT_TYPES: Final = (
    "ObjectEvent",
    "AggregationEvent",
    "TransactionEvent",
    "TransformationEvent",
    "AssociationEvent",
)
# the prefixes the EPCIS 2.0 JSON-LD context declares; a document may add its own
EPCIS_PREFIXES: Final[Mapping[str, str]] = {
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": "https://ref.gs1.org/cbv/",
    "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": "https://gs1.org/voc/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}
_NOT_HASHED: Final = frozenset(
    {"eventID", "recordTime", "errorDeclaration", "rdfs:comment", "comment", "@context"}
)
_CBV_URNS: Final = {
    "urn:epcglobal:cbv:bizstep:": "https://ref.gs1.org/cbv/BizStep-",
    "urn:epcglobal:cbv:disp:": "https://ref.gs1.org/cbv/Disp-",
    "urn:epcglobal:cbv:btt:": "https://ref.gs1.org/cbv/BTT-",
    "urn:epcglobal:cbv:sdt:": "https://ref.gs1.org/cbv/SDT-",
    "urn:epcglobal:cbv:er:": "https://ref.gs1.org/cbv/ER-",
}
_GS1_VOC: Final = "https://gs1.org/voc/"
_COMPONENT: Final = "https://ref.gs1.org/cbv/Comp-"
_TIMESTAMP: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})\Z"
)
_PREFIXED: Final = re.compile(r"([A-Za-z_][\w.-]*):(.+)\Z")


def _fail(path: str, message: str, code: str = "invalid_event") -> InvalidInput:
    return InvalidInput(f"{path or '/'}: {message}", field=path or "/", code=code)


# --- namespaces ----------------------------------------------------------------------------


def _collect_prefixes(context: Any, into: dict[str, str], path: str) -> None:
    """Prefix definitions of a JSON-LD @context (a URL, an object, or a list of them)."""
    if context is None or isinstance(context, str):
        return
    if isinstance(context, list):
        for index, item in enumerate(context):
            _collect_prefixes(item, into, f"{path}/{index}")
        return
    if not isinstance(context, Mapping):
        raise _fail(path, "@context must be a URL, an object or a list of them")
    for term, definition in context.items():
        iri = definition.get("@id") if isinstance(definition, Mapping) else definition
        # JSON-LD 1.1: a term whose IRI ends in a gen-delim can serve as a prefix
        if not term.startswith("@") and isinstance(iri, str) and iri[-1:] in ":/?#[]@":
            into[term] = iri


@dataclass(frozen=True)
class _Namespaces:
    prefixes: Mapping[str, str]

    def expand(self, value: str) -> str:
        """A CURIE with a declared prefix as its full IRI; anything else unchanged."""
        found = _PREFIXED.match(value)
        if found and found[1] in self.prefixes and not found[2].startswith("//"):
            return self.prefixes[found[1]] + found[2]
        return value

    def field_name(self, key: str, path: str, *, nested: bool) -> str:
        """``{namespace IRI}localName`` of an extension key ``prefix:localName``.

        A key without a prefix is allowed inside an extension and written as it is.
        """
        found = _PREFIXED.match(key)
        if found is None or found[2].startswith("//"):
            if nested and not key.startswith("@"):
                return key
            raise _fail(path, f"{key!r} is neither an EPCIS field nor a prefix:name extension")
        if found[1] not in self.prefixes:
            raise _fail(path, f"extension {key!r} uses prefix {found[1]!r}, not in @context")
        return "{" + self.prefixes[found[1]] + "}" + found[2]


# --- values ----------------------------------------------------------------------------------


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise _fail(path, "is empty")
    return text


def _identified(text: str, path: str) -> str:
    try:
        return normalise_identifier(text)
    except InvalidInput as exc:
        raise _fail(path, exc.message, code=exc.code) from exc


def _term(ns: _Namespaces, value: Any, path: str) -> str:
    """Any string value: CURIE expanded, CBV URN as web URI, GS1 key as Digital Link."""
    text = ns.expand(_text(value, path))
    for urn, web in _CBV_URNS.items():
        if text.startswith(urn):
            return web + text[len(urn) :]
    looks_like_key = text[:8].lower() in ("urn:epc:", "https://") or text[:7].lower() == "http://"
    if looks_like_key and not any(c.isspace() for c in text):
        return _identified(text, path)
    return text


def _uri(ns: _Namespaces, value: Any, path: str) -> str:
    """A value that must be an absolute URI (identifiers, links to documents)."""
    return _identified(_term(ns, value, path), path)


def _plain(ns: _Namespaces, value: Any, path: str) -> str:
    return _text(value, path)


def _vocabulary(kind: cbv.Vocabulary) -> Callable[[_Namespaces, Any, str], str]:
    def write(ns: _Namespaces, value: Any, path: str) -> str:
        text = _text(value, path)
        try:
            return cbv.web_uri(kind, ns.expand(text))
        except ValueError as exc:
            raise _fail(path, str(exc)) from exc

    return write


def _gs1_voc(base: str) -> Callable[[_Namespaces, Any, str], str]:
    """Sensor type / exception / component: a bare word is a term of ``base``."""

    def write(ns: _Namespaces, value: Any, path: str) -> str:
        text = _text(value, path)
        return base + text if ":" not in text else _uri(ns, text, path)

    return write


def _number(ns: _Namespaces, value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, f"expected a number, got {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise _fail(path, f"{value} is not a number JSON can carry")
    text = format(Decimal(repr(value)).normalize(), "f")
    return "0" if text == "-0" else text


def _boolean(ns: _Namespaces, value: Any, path: str) -> str:
    if not isinstance(value, bool):
        raise _fail(path, f"expected true or false, got {type(value).__name__}")
    return "true" if value else "false"


def _timestamp(ns: _Namespaces, value: Any, path: str) -> str:
    """UTC with exactly three decimals and "Z"; the fourth decimal rounds half up."""
    found = _TIMESTAMP.match(_text(value, path))
    if found is None:
        raise _fail(path, f"{value!r} is not a date-time with a time zone (xsd:dateTimeStamp)")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    fraction = fraction or ""
    millis = int((fraction + "000")[:3]) + (len(fraction) > 3 and fraction[3] >= "5")
    hours, minutes = (0, 0) if zone == "Z" else (int(zone[1:3]), int(zone[4:]))
    if hours * 60 + minutes > 14 * 60 or minutes > 59:
        raise _fail(path, f"{value!r} has time zone offset {zone}, outside -14:00..+14:00")
    offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
        utc = local - offset + timedelta(milliseconds=millis)
    except (ValueError, OverflowError) as exc:
        raise _fail(path, f"{value!r} is not a valid date-time: {exc}") from exc
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def utc_timestamp(value: str, *, path: str = "") -> str:
    """``value`` as the hash writes it: UTC, three decimals (half up), "Z"."""
    return _timestamp(_Namespaces({}), value, path)


# --- structures ------------------------------------------------------------------------------

Writer = Callable[[_Namespaces, Any, str], str]


def _extension_entries(
    ns: _Namespaces, key: str, value: Any, path: str, *, nested: bool
) -> list[str]:
    """``{ns}name=value``, ``{ns}name`` + sorted children, or one entry per list element."""
    name = ns.field_name(key, path, nested=nested)
    if isinstance(value, list):
        return [
            entry
            for index, item in enumerate(value)
            for entry in _extension_entries(ns, key, item, f"{path}/{index}", nested=nested)
        ]
    if isinstance(value, Mapping):
        return [name + _sorted_extensions(ns, value, path)]
    if isinstance(value, str):
        return [name + ("=" + _term(ns, value, path) if value.strip() else "")]
    if isinstance(value, bool):
        return [f"{name}={_boolean(ns, value, path)}"]
    if isinstance(value, int | float):
        return [f"{name}={_number(ns, value, path)}"]
    raise _fail(path, f"an extension value cannot be {type(value).__name__}")


def _sorted_extensions(ns: _Namespaces, fields: Mapping[str, Any], path: str) -> str:
    entries = [
        entry
        for key, value in fields.items()
        for entry in _extension_entries(ns, key, value, f"{path}/{key}", nested=True)
    ]
    return "".join(sorted(entries))


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    return value


def _items(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    return value


def _structure(
    ns: _Namespaces, value: Any, fields: tuple[tuple[str, Writer], ...], path: str
) -> str:
    """Standard fields in ``fields`` order, then the structure's extensions, sorted."""
    obj = _object(value, path)
    known = dict(fields)
    out = [
        f"{name}={write(ns, obj[name], f'{path}/{name}')}" for name, write in fields if name in obj
    ]
    extensions = [
        entry
        for key, item in obj.items()
        if key not in known
        for entry in _extension_entries(ns, key, item, f"{path}/{key}", nested=False)
    ]
    return "".join(out) + "".join(sorted(extensions))


def _list(label: str, element: Writer) -> Writer:
    """``label`` + the list's element strings, sorted; nothing for an empty list."""

    def write(ns: _Namespaces, value: Any, path: str) -> str:
        parts = [element(ns, item, f"{path}/{i}") for i, item in enumerate(_items(value, path))]
        return label + "".join(sorted(parts)) if parts else ""

    return write


def _labelled(label: str, fields: tuple[tuple[str, Writer], ...]) -> Writer:
    def write(ns: _Namespaces, value: Any, path: str) -> str:
        content = _structure(ns, value, fields, path)
        return label + content if content else ""

    return write


def _field(name: str, write: Writer) -> Writer:
    return lambda ns, value, path: f"{name}={write(ns, value, path)}"


_QUANTITY: Final = (("epcClass", _uri), ("quantity", _number), ("uom", _plain))
_SENSOR_METADATA: Final = (
    ("time", _timestamp), ("startTime", _timestamp), ("endTime", _timestamp),
    ("deviceID", _uri), ("deviceMetadata", _uri), ("rawData", _uri),
    ("dataProcessingMethod", _uri), ("bizRules", _uri),
)  # fmt: skip
_SENSOR_REPORT: Final = (
    ("type", _gs1_voc(_GS1_VOC)), ("exception", _gs1_voc(_GS1_VOC)), ("deviceID", _uri),
    ("deviceMetadata", _uri), ("rawData", _uri), ("dataProcessingMethod", _uri),
    ("time", _timestamp), ("microorganism", _uri), ("chemicalSubstance", _uri),
    ("value", _number), ("component", _gs1_voc(_COMPONENT)), ("stringValue", _term),
    ("booleanValue", _boolean), ("hexBinaryValue", _plain), ("uriValue", _uri),
    ("minValue", _number), ("maxValue", _number), ("meanValue", _number), ("sDev", _number),
    ("percRank", _number), ("percValue", _number), ("uom", _plain),
    ("coordinateReferenceSystem", _uri),
)  # fmt: skip


def _sensor_element(ns: _Namespaces, value: Any, path: str) -> str:
    element = _object(value, path)
    parts = ["sensorElement"]
    if "sensorMetadata" in element:
        parts.append(
            _labelled("sensorMetadata", _SENSOR_METADATA)(
                ns, element["sensorMetadata"], f"{path}/sensorMetadata"
            )
        )
    if "sensorReport" in element:
        reports = _list("", _labelled("sensorReport", _SENSOR_REPORT))
        parts.append(reports(ns, element["sensorReport"], f"{path}/sensorReport"))
    rest = {k: v for k, v in element.items() if k not in ("sensorMetadata", "sensorReport")}
    parts.append(_structure(ns, rest, (), path))
    return "".join(parts)


def _persistent_disposition(ns: _Namespaces, value: Any, path: str) -> str:
    fields = tuple(
        (name, _list("", _field(name, _vocabulary("disp")))) for name in ("set", "unset")
    )
    obj = _object(value, path)
    content = "".join(
        write(ns, obj[name], f"{path}/{name}") for name, write in fields if name in obj
    )
    unknown = [key for key in obj if key not in ("set", "unset")]
    if unknown:
        raise _fail(f"{path}/{unknown[0]}", "persistentDisposition has only set and unset")
    return "persistentDisposition" + content if content else ""


def _ilmd(ns: _Namespaces, value: Any, path: str) -> str:
    entries = [
        entry
        for key, item in _object(value, path).items()
        for entry in _extension_entries(ns, key, item, f"{path}/{key}", nested=False)
    ]
    return "ilmd" + "".join(sorted(entries)) if entries else ""


def _epcs(label: str) -> Writer:
    return _list(label, _field("epc", _uri))


def _quantities(label: str) -> Writer:
    return _list(label, _labelled("quantityElement", _QUANTITY))


def _typed(label: str, id_field: str, kind: cbv.Vocabulary) -> Writer:
    element = _labelled("", (("type", _vocabulary(kind)), (id_field, _uri)))
    return _list(label, element)


def _repeated(name: str, write: Writer) -> Writer:
    """A field holding one value or a list of values (certificationInfo), sorted."""

    def many(ns: _Namespaces, value: Any, path: str) -> str:
        if not isinstance(value, list):
            return f"{name}={write(ns, value, path)}"
        return "".join(sorted(f"{name}={write(ns, v, f'{path}/{i}')}" for i, v in enumerate(value)))

    return many


# top-level fields after eventType, in canonical order, each with its writer
_EVENT_FIELDS: Final[tuple[tuple[str, Writer], ...]] = (
    ("eventTime", _field("eventTime", _timestamp)),
    ("eventTimeZoneOffset", _field("eventTimeZoneOffset", _plain)),
    ("certificationInfo", _repeated("certificationInfo", _uri)),
    ("epcList", _epcs("epcList")),
    ("parentID", _field("parentID", _uri)),
    ("inputEPCList", _epcs("inputEPCList")),
    ("childEPCs", _epcs("childEPCs")),
    ("quantityList", _quantities("quantityList")),
    ("childQuantityList", _quantities("childQuantityList")),
    ("inputQuantityList", _quantities("inputQuantityList")),
    ("outputEPCList", _epcs("outputEPCList")),
    ("outputQuantityList", _quantities("outputQuantityList")),
    ("action", _field("action", _plain)),
    ("transformationID", _field("transformationID", _uri)),
    ("bizStep", _field("bizStep", _vocabulary("bizstep"))),
    ("disposition", _field("disposition", _vocabulary("disp"))),
    ("persistentDisposition", _persistent_disposition),
    ("readPoint", _labelled("readPoint", (("id", _uri),))),
    ("bizLocation", _labelled("bizLocation", (("id", _uri),))),
    ("bizTransactionList", _typed("bizTransactionList", "bizTransaction", "btt")),
    ("sourceList", _typed("sourceList", "source", "sdt")),
    ("destinationList", _typed("destinationList", "destination", "sdt")),
    ("sensorElementList", _list("sensorElementList", _sensor_element)),
    ("ilmd", _ilmd),
)
_EVENT_FIELD_NAMES: Final = frozenset(name for name, _ in _EVENT_FIELDS) | {"type"}


# --- public ----------------------------------------------------------------------------------


def prehash_string(event: Mapping[str, Any], *, context: Any = None) -> str:
    """The CBV 2.0 pre-hash string of one EPCIS 2.0 JSON event.

    ``context`` is the enclosing document's ``@context``; the event's own ``@context``
    adds to it. Both only matter for the prefixes of CURIEs and extension fields.
    """
    event = _object(event, "")
    prefixes = dict(EPCIS_PREFIXES)
    _collect_prefixes(context, prefixes, "/@context")
    _collect_prefixes(event.get("@context"), prefixes, "/@context")
    ns = _Namespaces(prefixes)
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise _fail("/type", f"expected one of {', '.join(EVENT_TYPES)}, got {kind!r}")
    if "eventTime" not in event:
        raise _fail("/eventTime", "an event needs an eventTime")
    parts = [f"eventType={kind}"]
    parts += [write(ns, event[name], f"/{name}") for name, write in _EVENT_FIELDS if name in event]
    extensions = [
        entry
        for key, value in event.items()
        if key not in _EVENT_FIELD_NAMES and key not in _NOT_HASHED
        for entry in _extension_entries(ns, key, value, f"/{key}", nested=False)
    ]
    return "".join(parts) + "".join(sorted(extensions))


def event_hash_id(event: Mapping[str, Any], *, context: Any = None) -> str:
    """The event's GS1 Event Hash ID: ``ni:///sha-256;<64 hex>?ver=CBV2.0``."""
    digest = hashlib.sha256(prehash_string(event, context=context).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver={HASH_VERSION}"
