"""Reading EPCIS 2.0 JSON / JSON-LD: validate a capture body, normalise its events.

A capture body is an ``EPCISDocument`` (events under ``epcisBody.eventList``) or one
bare event. Each event is checked field by field (every problem is reported, with an
RFC 6901 pointer into the body) and then normalised into the form fourflow stores,
serves and hashes:

- every GS1 key (EPC URN or Digital Link on any host) becomes its canonical GS1 Digital
  Link URI ``https://id.gs1.org/...`` with a verified check digit;
- CBV terms (bizStep, disposition, source/destination and business-transaction types)
  become their bare CBV 2.0 words; private vocabularies stay as the URIs they are;
- ``eventTime`` becomes UTC with exactly three decimals; the original offset stays in
  ``eventTimeZoneOffset``, as EPCIS requires;
- ``eventID`` becomes the event's GS1 CBV 2.0 event hash ID (docs/epcis-event-hash.md),
  fourflow's identity for it: the same event captured twice, in any spelling, has one
  hash ID and is stored once.

Nothing here touches the store or the chain: a body either yields a list of
``CapturedEvent`` or raises ``InvalidDocument`` listing what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ledger.errors import InvalidDocument, InvalidInput, TooLarge
from ledger.models import offset_zone
from oracles.epcis import cbv
from oracles.epcis.event_hash import EVENT_TYPES, event_hash_id, utc_timestamp
from oracles.epcis.gs1 import normalise_identifier

__all__ = [
    "EPCIS_CONTEXT",
    "EVENT_TYPES",
    "MAX_IDENTIFIERS",
    "CapturedEvent",
    "parse_capture",
    "utc_millis",
]

EPCIS_CONTEXT: Final = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_IDENTIFIERS: Final = 1_000  # identifiers one event may name (fourflow's asset_ids cap)

_OFFSET = re.compile(r"^[+-](?:0\d|1[0-3]):[0-5]\d$|^[+-]14:00$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")
_EXTENSION_KEY = re.compile(r"^[A-Za-z_][\w.-]*:[A-Za-z_][\w.-]*$")


# --- structure -------------------------------------------------------------------------


class _Part(BaseModel):
    """A nested EPCIS structure: standard fields typed, namespaced extensions allowed."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)

    def extensions(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class _Where(_Part):
    id: str


class _Quantity(_Part):
    epcClass: str
    quantity: float | int | None = Field(default=None, ge=0)
    uom: str | None = Field(default=None, pattern=r"^[0-9A-Z]{2,3}$")


class _BizTransaction(_Part):
    type: str | None = None
    bizTransaction: str


class _Source(_Part):
    type: str
    source: str


class _Destination(_Part):
    type: str
    destination: str


class _PersistentDisposition(_Part):
    set: list[str] | None = None
    unset: list[str] | None = None


class _SensorMetadata(_Part):
    time: str | None = None
    startTime: str | None = None
    endTime: str | None = None
    deviceID: str | None = None
    deviceMetadata: str | None = None
    rawData: str | None = None
    dataProcessingMethod: str | None = None
    bizRules: str | None = None


class _SensorReport(_Part):
    type: str | None = None
    exception: Literal["ALARM_CONDITION", "ERROR_CONDITION"] | None = None
    deviceID: str | None = None
    deviceMetadata: str | None = None
    rawData: str | None = None
    dataProcessingMethod: str | None = None
    time: str | None = None
    microorganism: str | None = None
    chemicalSubstance: str | None = None
    value: float | int | None = None
    component: str | None = None
    stringValue: str | None = None
    booleanValue: bool | None = None
    hexBinaryValue: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]*$")
    uriValue: str | None = None
    minValue: float | int | None = None
    maxValue: float | int | None = None
    meanValue: float | int | None = None
    sDev: float | int | None = None
    percRank: float | int | None = None
    percValue: float | int | None = None
    uom: str | None = Field(default=None, pattern=r"^[0-9A-Z]{2,3}$")
    coordinateReferenceSystem: str | None = None


class _SensorElement(_Part):
    sensorMetadata: _SensorMetadata | None = None
    sensorReport: list[_SensorReport] = Field(min_length=1)


class _ErrorDeclaration(_Part):
    declarationTime: str
    reason: str | None = None
    correctiveEventIDs: list[str] | None = None


class _Event(_Part):
    type: str
    eventTime: str
    eventTimeZoneOffset: str
    eventID: str | None = None
    recordTime: str | None = None
    certificationInfo: str | list[str] | None = None
    errorDeclaration: _ErrorDeclaration | None = None
    action: Literal["ADD", "OBSERVE", "DELETE"] | None = None
    bizStep: str | None = None
    disposition: str | None = None
    persistentDisposition: _PersistentDisposition | None = None
    readPoint: _Where | None = None
    bizLocation: _Where | None = None
    bizTransactionList: list[_BizTransaction] | None = None
    sourceList: list[_Source] | None = None
    destinationList: list[_Destination] | None = None
    sensorElementList: list[_SensorElement] | None = None
    epcList: list[str] | None = None
    quantityList: list[_Quantity] | None = None
    parentID: str | None = None
    childEPCs: list[str] | None = None
    childQuantityList: list[_Quantity] | None = None
    inputEPCList: list[str] | None = None
    inputQuantityList: list[_Quantity] | None = None
    outputEPCList: list[str] | None = None
    outputQuantityList: list[_Quantity] | None = None
    transformationID: str | None = None
    ilmd: dict[str, Any] | None = None
    context: Any = Field(default=None, alias="@context")

    @field_validator("eventTime")
    @classmethod
    def _time(cls, value: str) -> str:
        _parse_time(value)
        return value

    @field_validator("eventTimeZoneOffset")
    @classmethod
    def _offset(cls, value: str) -> str:
        if not _OFFSET.fullmatch(value):
            raise ValueError("expected an offset from -14:00 to +14:00, e.g. +08:00")
        return value


# Which of the type-specific fields each event type may carry, and which it must.
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "ObjectEvent": frozenset({"action", "epcList", "quantityList", "ilmd"}),
    "AggregationEvent": frozenset({"action", "parentID", "childEPCs", "childQuantityList"}),
    "AssociationEvent": frozenset({"action", "parentID", "childEPCs", "childQuantityList"}),
    "TransactionEvent": frozenset({"action", "parentID", "epcList", "quantityList"}),
    "TransformationEvent": frozenset(
        {
            "inputEPCList",
            "inputQuantityList",
            "outputEPCList",
            "outputQuantityList",
            "transformationID",
            "ilmd",
        }
    ),
}
_SPECIFIC: Final = frozenset().union(*_ALLOWED.values())


# --- the result ------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedEvent:
    """One validated, normalised event of a capture body."""

    hash_id: str
    type: str
    pointer: str  # where it sat in the body, e.g. /epcisBody/eventList/3
    event: dict[str, Any]  # normalised EPCIS 2.0 JSON, eventID = hash_id
    event_time: str  # RFC 3339 in the event's own offset (fourflow's EventBody.event_time)
    event_time_ms: int
    identifiers: dict[str, list[str]] = field(default_factory=dict)  # role -> DL URIs

    @property
    def epcs(self) -> list[str]:
        """Every identifier the event names, in role order, each once."""
        seen: dict[str, None] = {}
        for role in ("parent", "epc", "child", "input", "output", "class"):
            for value in self.identifiers.get(role, []):
                seen.setdefault(value, None)
        return list(seen)


# --- parsing ---------------------------------------------------------------------------


def _parse_time(value: str) -> datetime:
    if not _DATE_TIME.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2026-11-20T06:00:00Z")
    head, _, rest = value.partition(".")
    fraction = ""
    if rest:
        digits = re.match(r"\d+", rest)
        assert digits is not None
        fraction = digits.group(0)
        tail = rest[len(fraction) :]
        value = f"{head}.{fraction[:6].ljust(6, '0')}{tail}"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid date-time: {exc}") from exc
    return parsed


def utc_millis(value: str) -> tuple[str, int]:
    """(``YYYY-MM-DDThh:mm:ss.sssZ``, unix ms) of an RFC 3339 time, rounded to the
    millisecond exactly as the event hash rounds it (so the stored event re-hashes to
    its own id)."""
    _parse_time(value)
    try:
        text = utc_timestamp(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from exc
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return text, (moment - _EPOCH) // timedelta(milliseconds=1)


def _in_offset(utc_ms: int, offset: str) -> str:
    """The instant ``utc_ms`` written in the event's own offset, e.g. ...T14:00:00.000+08:00."""
    local = datetime.fromtimestamp(utc_ms // 1000, tz=UTC).astimezone(offset_zone(offset))
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc_ms % 1000:03d}" + offset


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "list[str]", "dict[str,any]"})


def _pointer(*parts: object) -> str:
    """An RFC 6901 pointer; pydantic's union-member tags ("float", …) are not fields."""
    kept = [p for p in parts if not (isinstance(p, str) and p.lower() in _UNION_TAGS)]
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in kept) or "/"


class _Errors:
    """Collects every problem of a body, each with its JSON pointer."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, pointer: str, message: str) -> None:
        if len(self.items) < 100:
            self.items.append({"pointer": pointer, "message": message})

    def guard(self, pointer: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (ValueError, InvalidInput) as exc:
            self.add(pointer, exc.message if isinstance(exc, InvalidInput) else str(exc))
            return None


def parse_capture(body: Any, *, max_events: int = 10_000) -> list[CapturedEvent]:
    """Validate and normalise a capture body (an EPCISDocument or one event).

    Raises InvalidDocument listing every problem; nothing is partially accepted.
    """
    errors = _Errors()
    if not isinstance(body, Mapping):
        raise InvalidDocument(
            "expected a JSON object", errors=[{"pointer": "/", "message": "expected a JSON object"}]
        )
    if body.get("type") == "EPCISDocument":
        raw_events, base, context = _document_events(body, errors, max_events=max_events)
    elif body.get("type") in EVENT_TYPES:
        raw_events, base, context = [body], "", body.get("@context")
    else:
        errors.add(
            "/type",
            f"expected 'EPCISDocument' or an event type ({', '.join(EVENT_TYPES)}), "
            f"got {body.get('type')!r}",
        )
        raw_events, base, context = [], "", None
    captured = []
    for index, raw in enumerate(raw_events):
        pointer = f"{base}/{index}" if base else ""
        event = _parse_event(raw, pointer=pointer, context=context, errors=errors)
        if event is not None:
            captured.append(event)
    if errors.items:
        first = errors.items[0]
        more = len(errors.items) - 1
        suffix = f" (and {more} more)" if more else ""
        raise InvalidDocument(
            f"{first['pointer']}: {first['message']}{suffix}", errors=errors.items
        )
    seen: dict[str, str] = {}
    for event in captured:
        if event.hash_id in seen:
            errors.add(
                event.pointer or "/",
                f"the same event as {seen[event.hash_id] or '/'} (event hash {event.hash_id})",
            )
        seen.setdefault(event.hash_id, event.pointer)
    if errors.items:
        raise InvalidDocument(errors.items[0]["message"], errors=errors.items)
    return captured


def _document_events(
    body: Mapping[str, Any], errors: _Errors, *, max_events: int
) -> tuple[list[Any], str, Any]:
    if body.get("schemaVersion") not in ("2.0", "2.0.0", None):
        errors.add("/schemaVersion", f"expected '2.0', got {body.get('schemaVersion')!r}")
    if "creationDate" in body:
        errors.guard("/creationDate", lambda: _parse_time(str(body["creationDate"])))
    epcis_body = body.get("epcisBody")
    events = epcis_body.get("eventList") if isinstance(epcis_body, Mapping) else None
    if not isinstance(events, list):
        errors.add("/epcisBody/eventList", "expected a list of events")
        return [], "", None
    if not events:
        errors.add("/epcisBody/eventList", "the document holds no events")
    if len(events) > max_events:
        raise TooLarge(
            f"{len(events)} events in one document; the capture limit is {max_events}",
            field="/epcisBody/eventList",
            code="capture_limit",
        )
    return events, "/epcisBody/eventList", body.get("@context")


def _parse_event(raw: Any, *, pointer: str, context: Any, errors: _Errors) -> CapturedEvent | None:
    if not isinstance(raw, Mapping):
        errors.add(pointer or "/", "expected an event object")
        return None
    before = len(errors.items)
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        errors.add(f"{pointer}/type", f"expected one of {', '.join(EVENT_TYPES)}, got {kind!r}")
        return None
    try:
        model = _Event.model_validate(dict(raw))
    except ValidationError as exc:
        for problem in exc.errors():
            errors.add(pointer + _pointer(*problem["loc"]), problem["msg"])
        return None
    _check_shape(model, kind, pointer, errors)
    normalised = _Normaliser(pointer, errors).event(model)
    if len(errors.items) > before or normalised is None:
        return None
    event, identifiers = normalised
    hash_context = _merged_context(context, model.context)
    if hash_context:
        event["@context"] = hash_context  # stored whole: the event re-hashes on its own
    hash_id = errors.guard(pointer or "/", lambda: event_hash_id(event, context=hash_context))
    if hash_id is None:
        return None
    if not identifiers:
        errors.add(pointer or "/", "names no EPC, class, parent or transformation input/output")
        return None
    if len({v for ids in identifiers.values() for v in ids}) > MAX_IDENTIFIERS:
        errors.add(pointer or "/", f"names more than {MAX_IDENTIFIERS} identifiers")
        return None
    event = {"eventID": hash_id, **event}
    _, utc_ms = utc_millis(model.eventTime)
    return CapturedEvent(
        hash_id=hash_id,
        type=kind,
        pointer=pointer,
        event=event,
        event_time=_in_offset(utc_ms, model.eventTimeZoneOffset),
        event_time_ms=utc_ms,
        identifiers=identifiers,
    )


_STORABLE = re.compile(r"^[!-~]{1,200}$")


def _stored_identifier(value: str) -> str:
    """Identifiers and vocabulary URIs are stored and indexed as they are: at most 200
    printable ASCII characters (percent-encode anything else, as URIs do)."""
    if not _STORABLE.fullmatch(value):
        shown = value if len(value) <= 60 else value[:60] + "…"
        raise ValueError(
            f"{shown!r} is not an identifier fourflow can store: at most 200 printable "
            "ASCII characters, others percent-encoded"
        )
    return value


def _merged_context(*contexts: Any) -> list[Any]:
    """The document's and the event's ``@context`` as one flat JSON-LD context list."""
    merged: list[Any] = []
    for context in contexts:
        for entry in context if isinstance(context, list) else [context]:
            if entry is not None and entry not in merged:
                merged.append(entry)
    return merged


def _check_shape(model: _Event, kind: str, pointer: str, errors: _Errors) -> None:
    present = {name for name in _SPECIFIC if getattr(model, name) is not None}
    for name in sorted(present - _ALLOWED[kind]):
        errors.add(f"{pointer}/{name}", f"not a field of {kind}")
    for key in model.extensions():
        if not _EXTENSION_KEY.fullmatch(key):
            errors.add(
                f"{pointer}/{key}",
                "unknown field; extensions must be namespaced, e.g. 'example:myField'",
            )
    if kind != "TransformationEvent" and model.action is None:
        errors.add(f"{pointer}/action", f"{kind} needs an action (ADD, OBSERVE or DELETE)")
    parent_needed = kind == "AssociationEvent" or (
        kind == "AggregationEvent" and model.action != "OBSERVE"
    )
    if parent_needed and model.parentID is None:
        errors.add(f"{pointer}/parentID", f"{kind} with action {model.action} needs a parentID")
    if kind == "TransactionEvent" and not model.bizTransactionList:
        errors.add(f"{pointer}/bizTransactionList", "a TransactionEvent names its transactions")
    if kind == "ObjectEvent" and not (model.epcList or model.quantityList):
        errors.add(f"{pointer}/epcList", "an ObjectEvent names at least one EPC or quantity")
    if model.ilmd is not None and model.action not in ("ADD", None):
        errors.add(f"{pointer}/ilmd", "ilmd belongs to ADD events (and transformations) only")


class _Normaliser:
    """Builds the normalised event dict, reporting each bad value at its pointer."""

    def __init__(self, pointer: str, errors: _Errors) -> None:
        self.pointer = pointer
        self.errors = errors
        self.identifiers: dict[str, list[str]] = {}

    def _id(self, value: str, *parts: object, role: str | None = None) -> str:
        result = self.errors.guard(
            self.pointer + _pointer(*parts), lambda: _stored_identifier(normalise_identifier(value))
        )
        normal = value if result is None else str(result)
        if role is not None and result is not None:
            bucket = self.identifiers.setdefault(role, [])
            if normal not in bucket:
                bucket.append(normal)
        return normal

    def _term(self, vocabulary: cbv.Vocabulary, value: str, *parts: object) -> str:
        result = self.errors.guard(
            self.pointer + _pointer(*parts),
            lambda: _stored_identifier(cbv.compact(vocabulary, value)),
        )
        return value if result is None else str(result)

    def _ids(self, values: list[str] | None, name: str, role: str) -> list[str] | None:
        if values is None:
            return None
        out = [self._id(v, name, i, role=role) for i, v in enumerate(values)]
        if len(set(out)) != len(out):
            self.errors.add(self.pointer + _pointer(name), "names the same identifier twice")
        return out

    def _quantities(self, items: list[_Quantity] | None, name: str) -> list[dict[str, Any]] | None:
        if items is None:
            return None
        out = []
        for i, q in enumerate(items):
            if q.uom is not None and q.quantity is None:
                self.errors.add(self.pointer + _pointer(name, i, "uom"), "a uom needs a quantity")
            entry: dict[str, Any] = {
                "epcClass": self._id(q.epcClass, name, i, "epcClass", role="class")
            }
            if q.quantity is not None:
                entry["quantity"] = q.quantity
            if q.uom is not None:
                entry["uom"] = q.uom
            out.append({**entry, **q.extensions()})
        return out

    def event(self, m: _Event) -> tuple[dict[str, Any], dict[str, list[str]]] | None:
        utc_text, _ = self.errors.guard(
            self.pointer + "/eventTime", lambda: utc_millis(m.eventTime)
        ) or (
            None,
            None,
        )
        if utc_text is None:
            return None
        e: dict[str, Any] = {
            "type": m.type,
            "eventTime": utc_text,
            "eventTimeZoneOffset": m.eventTimeZoneOffset,
        }
        if m.certificationInfo is not None:
            e["certificationInfo"] = m.certificationInfo
        if m.errorDeclaration is not None:
            e["errorDeclaration"] = m.errorDeclaration.model_dump(exclude_none=True)
        if m.parentID is not None:
            e["parentID"] = self._id(m.parentID, "parentID", role="parent")
        for name, role in (
            ("epcList", "epc"),
            ("childEPCs", "child"),
            ("inputEPCList", "input"),
            ("outputEPCList", "output"),
        ):
            values = self._ids(getattr(m, name), name, role)
            if values is not None:
                e[name] = values
        for name in (
            "quantityList",
            "childQuantityList",
            "inputQuantityList",
            "outputQuantityList",
        ):
            quantities = self._quantities(getattr(m, name), name)
            if quantities is not None:
                e[name] = quantities
        if m.action is not None:
            e["action"] = m.action
        if m.transformationID is not None:
            e["transformationID"] = self._id(m.transformationID, "transformationID")
        if m.bizStep is not None:
            e["bizStep"] = self._term("bizstep", m.bizStep, "bizStep")
        if m.disposition is not None:
            e["disposition"] = self._term("disp", m.disposition, "disposition")
        if m.persistentDisposition is not None:
            pd = m.persistentDisposition
            e["persistentDisposition"] = {
                key: [
                    self._term("disp", v, "persistentDisposition", key, i)
                    for i, v in enumerate(values)
                ]
                for key, values in (("set", pd.set), ("unset", pd.unset))
                if values is not None
            }
        for name in ("readPoint", "bizLocation"):
            where = getattr(m, name)
            if where is not None:
                e[name] = {"id": self._id(where.id, name, "id"), **where.extensions()}
        if m.bizTransactionList is not None:
            e["bizTransactionList"] = [
                {
                    **(
                        {"type": self._term("btt", t.type, "bizTransactionList", i, "type")}
                        if t.type
                        else {}
                    ),
                    "bizTransaction": self._id(
                        t.bizTransaction, "bizTransactionList", i, "bizTransaction"
                    ),
                    **t.extensions(),
                }
                for i, t in enumerate(m.bizTransactionList)
            ]
        if m.sourceList is not None:
            e["sourceList"] = [
                {
                    "type": self._term("sdt", s.type, "sourceList", i, "type"),
                    "source": self._id(s.source, "sourceList", i, "source"),
                    **s.extensions(),
                }
                for i, s in enumerate(m.sourceList)
            ]
        if m.destinationList is not None:
            e["destinationList"] = [
                {
                    "type": self._term("sdt", d.type, "destinationList", i, "type"),
                    "destination": self._id(d.destination, "destinationList", i, "destination"),
                    **d.extensions(),
                }
                for i, d in enumerate(m.destinationList)
            ]
        if m.sensorElementList is not None:
            e["sensorElementList"] = [self._sensor(s, i) for i, s in enumerate(m.sensorElementList)]
        if m.ilmd is not None:
            e["ilmd"] = m.ilmd
        e.update(m.extensions())
        return e, self.identifiers

    def _sensor(self, element: _SensorElement, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if element.sensorMetadata is not None:
            meta = element.sensorMetadata.model_dump(exclude_none=True)
            for key in ("time", "startTime", "endTime"):
                if key in meta:
                    meta[key] = self._time(
                        meta[key], "sensorElementList", index, "sensorMetadata", key
                    )
            if "deviceID" in meta:
                meta["deviceID"] = self._id(
                    meta["deviceID"], "sensorElementList", index, "sensorMetadata", "deviceID"
                )
            out["sensorMetadata"] = meta
        reports = []
        for r, report in enumerate(element.sensorReport):
            values = report.model_dump(exclude_none=True)
            if "time" in values:
                values["time"] = self._time(
                    values["time"], "sensorElementList", index, "sensorReport", r, "time"
                )
            if "deviceID" in values:
                values["deviceID"] = self._id(
                    values["deviceID"], "sensorElementList", index, "sensorReport", r, "deviceID"
                )
            if "uom" in values and not any(
                k in values
                for k in ("value", "minValue", "maxValue", "meanValue", "percValue", "sDev")
            ):
                self.errors.add(
                    self.pointer + _pointer("sensorElementList", index, "sensorReport", r, "uom"),
                    "a uom needs a numeric value",
                )
            reports.append(values)
        out["sensorReport"] = reports
        out.update(element.extensions())
        return out

    def _time(self, value: str, *parts: object) -> str:
        result = self.errors.guard(self.pointer + _pointer(*parts), lambda: utc_millis(value))
        return value if result is None else str(result[0])
