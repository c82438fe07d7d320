"""GS1 Core Business Vocabulary (CBV) 2.0 terms fourflow recognises, and their forms.

A CBV value reaches us in one of three spellings, all meaning the same term:

    bare word (EPCIS 2.0 JSON-LD)   shipping
    CBV 1.x URN                     urn:epcglobal:cbv:bizstep:shipping
    CBV 2.0 web URI                 https://ref.gs1.org/cbv/BizStep-shipping

``compact`` turns any of them into the bare word (what fourflow stores and serves);
``web_uri`` into the CBV 2.0 URI (what the event hash uses). A value that is not a CBV
term must be an absolute URI of the user's own vocabulary and is kept as it is.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "BIZ_STEPS",
    "BIZ_TRANSACTION_TYPES",
    "DISPOSITIONS",
    "SOURCE_DEST_TYPES",
    "Vocabulary",
    "compact",
    "web_uri",
]

Vocabulary = Literal["bizstep", "disp", "btt", "sdt"]

BIZ_STEPS: Final = frozenset(
    [
        "accepting",
        "arriving",
        "assembling",
        "collecting",
        "commissioning",
        "consigning",
        "creating_class_instance",
        "cycle_counting",
        "decommissioning",
        "departing",
        "destroying",
        "disassembling",
        "dispensing",
        "encoding",
        "entering_exiting",
        "holding",
        "inspecting",
        "installing",
        "killing",
        "loading",
        "other",
        "packing",
        "picking",
        "receiving",
        "removing",
        "repackaging",
        "repairing",
        "replacing",
        "reserving",
        "retail_selling",
        "sampling",
        "sensor_reporting",
        "shipping",
        "staging_outbound",
        "stock_taking",
        "stocking",
        "storing",
        "transporting",
        "unloading",
        "unpacking",
        "void_shipping",
    ]
)
DISPOSITIONS: Final = frozenset(
    [
        "active",
        "available",
        "completeness_inferred",
        "completeness_verified",
        "conformant",
        "container_closed",
        "container_open",
        "damaged",
        "destroyed",
        "dispensed",
        "disposed",
        "encoded",
        "expired",
        "in_progress",
        "in_transit",
        "inactive",
        "mismatch_instance",
        "mismatch_class",
        "mismatch_quantity",
        "needs_replacement",
        "no_pedigree_match",
        "non_conformant",
        "non_sellable_other",
        "partially_dispensed",
        "recalled",
        "reserved",
        "retail_sold",
        "returned",
        "sellable_accessible",
        "sellable_not_accessible",
        "stolen",
        "unavailable",
        "unknown",
    ]
)
BIZ_TRANSACTION_TYPES: Final = frozenset(
    [
        "bol",
        "cert",
        "desadv",
        "inv",
        "pedigree",
        "po",
        "poc",
        "prodorder",
        "recadv",
        "rma",
        "testprd",
        "testres",
        "upevt",
    ]
)
SOURCE_DEST_TYPES: Final = frozenset({"owning_party", "possessing_party", "location"})

_TERMS: Final[dict[str, frozenset[str]]] = {
    "bizstep": BIZ_STEPS,
    "disp": DISPOSITIONS,
    "btt": BIZ_TRANSACTION_TYPES,
    "sdt": SOURCE_DEST_TYPES,
}
_WEB_PREFIX: Final[dict[str, str]] = {
    "bizstep": "https://ref.gs1.org/cbv/BizStep-",
    "disp": "https://ref.gs1.org/cbv/Disp-",
    "btt": "https://ref.gs1.org/cbv/BTT-",
    "sdt": "https://ref.gs1.org/cbv/SDT-",
}


def _is_absolute_uri(value: str) -> bool:
    scheme, sep, rest = value.partition(":")
    return bool(sep and rest and scheme[:1].isalpha() and scheme.replace("+", "").isalnum())


def compact(vocabulary: Vocabulary, value: str) -> str:
    """The bare CBV word for ``value``, or ``value`` itself if it is another URI.

    Raises ValueError for a bare word that is not a CBV term, or a CBV-looking URI
    that names no term: both are typos a lender would otherwise never see.
    """
    terms = _TERMS[vocabulary]
    for prefix in (f"urn:epcglobal:cbv:{vocabulary}:", _WEB_PREFIX[vocabulary]):
        if value.startswith(prefix):
            word = value[len(prefix) :]
            if word not in terms:
                raise ValueError(f"{value!r} is not a CBV 2.0 {vocabulary} term")
            return word
    if value in terms:
        return value
    if _is_absolute_uri(value) and not value.startswith(
        ("urn:epcglobal:cbv:", "https://ref.gs1.org/cbv/")
    ):
        return value  # a private vocabulary, e.g. https://example.com/steps/weighing
    raise ValueError(
        f"{value!r} is neither a CBV 2.0 {vocabulary} term nor an absolute URI of your own"
    )


def web_uri(vocabulary: Vocabulary, value: str) -> str:
    """The CBV 2.0 web URI of a term (any spelling); other URIs unchanged."""
    word = compact(vocabulary, value)
    return _WEB_PREFIX[vocabulary] + word if word in _TERMS[vocabulary] else word
