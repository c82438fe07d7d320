"""oracles.epcis.gs1: GS1 check digits, EPC URIs and GS1 Digital Link URIs -> one canonical form.

Expected URN -> element string pairs are the worked examples of the GS1 EPC Tag Data
Standard (written here as Digital Link paths), not values this module produced; check
digits are also recomputed by the small reference below.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from oracles.epcis import gs1
from oracles.epcis.gs1 import (
    check_digit,
    is_valid_check_digit,
    normalise_identifier,
    to_digital_link,
)

PROPERTY = settings(derandomize=True, max_examples=150, deadline=None, database=None)
CSET82 = string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_"
# characters an EPC URI must escape (Tag Data Standard); the rest of set 82 may stay raw
EPC_ESCAPED = '"%&/<>?'


def ref_check_digit(digits: str) -> str:
    """GS1 General Specifications 7.9.1, written out: weights 3,1,3,... from the right."""
    weights = [3 if i % 2 == 0 else 1 for i in range(len(digits))][::-1]
    total = sum(w * int(d) for w, d in zip(weights, digits, strict=True))
    return str((10 - total % 10) % 10)


def dl(path: str) -> str:
    return "https://id.gs1.org" + path


def test_public_api_is_pinned() -> None:
    assert sorted(gs1.__all__) == sorted(
        [
            "CANONICAL_HOST",
            "check_digit",
            "is_valid_check_digit",
            "normalise_identifier",
            "to_digital_link",
        ]
    )


# --- check digits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("09521568251204", "GTIN-14"),
        ("4006381333931", "GTIN-13"),
        ("036000291452", "GTIN-12 (UPC-A)"),
        ("96385074", "GTIN-8"),
        ("106141412345678908", "SSCC"),
        ("0614141123452", "GLN"),
        ("06141411234567890", "GSIN"),
        ("061414112345678902", "GSRN"),
    ],
)
def test_published_keys_have_valid_check_digits(key: str, kind: str) -> None:
    assert is_valid_check_digit(key), kind
    assert check_digit(key[:-1]) == key[-1] == ref_check_digit(key[:-1])


@PROPERTY
@given(st.text(alphabet=string.digits, min_size=1, max_size=17))
def test_check_digit_matches_the_reference(digits: str) -> None:
    assert check_digit(digits) == ref_check_digit(digits)
    assert is_valid_check_digit(digits + check_digit(digits))


@PROPERTY
@given(st.text(alphabet=string.digits, min_size=7, max_size=17), st.data())
def test_any_single_digit_error_is_caught(digits: str, data: st.DataObject) -> None:
    key = digits + check_digit(digits)
    position = data.draw(st.integers(0, len(key) - 1))
    wrong = data.draw(st.sampled_from([d for d in string.digits if d != key[position]]))
    assert not is_valid_check_digit(key[:position] + wrong + key[position + 1 :])


@pytest.mark.parametrize("key", ["", "7", "09521568251204x", "0952156825120 4", "٠١٢٣"])
def test_is_valid_check_digit_is_false_for_non_keys(key: str) -> None:
    assert is_valid_check_digit(key) is False


@pytest.mark.parametrize("digits", ["", "12a4", "١٢٣"])
def test_check_digit_rejects_non_digits(digits: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_digit(digits)
    assert err.value.code == "invalid_identifier"


# --- EPC URIs (EPC Tag Data Standard examples) ------------------------------------------------

TDS_EXAMPLES = [
    ("urn:epc:id:sgtin:0614141.812345.6789", "/01/80614141123458/21/6789"),
    ("urn:epc:id:sscc:0614141.1234567890", "/00/106141412345678908"),
    ("urn:epc:id:sgln:0614141.12345.400", "/414/0614141123452/254/400"),
    ("urn:epc:id:sgln:0614141.12345.0", "/414/0614141123452"),
    ("urn:epc:id:grai:0614141.12345.400", "/8003/00614141123452400"),
    ("urn:epc:id:giai:0614141.12345400", "/8004/061414112345400"),
    ("urn:epc:id:gsrn:0614141.1234567890", "/8018/061414112345678902"),
    ("urn:epc:id:gsrnp:0614141.1234567890", "/8017/061414112345678902"),
    ("urn:epc:id:gdti:0614141.12345.400", "/253/0614141123452400"),
    ("urn:epc:id:sgcn:4012345.67890.04711", "/255/401234567890104711"),
    ("urn:epc:id:cpi:0614141.123ABC.123456789", "/8010/0614141123ABC/8011/123456789"),
    ("urn:epc:id:cpi:0614141.5PQ7%2FZ43.12345", "/8010/06141415PQ7%2FZ43/8011/12345"),
    ("urn:epc:id:ginc:0614141.xyz47%2F11", "/401/0614141xyz47%2F11"),
    ("urn:epc:id:gsin:0614141.123456789", "/402/06141411234567890"),
    ("urn:epc:id:itip:4012345.012345.01.02.987", "/8006/040123451234560102/21/987"),
    ("urn:epc:id:pgln:0614141.12345", "/417/0614141123452"),
    (
        "urn:epc:id:upui:1234567.089456.51qIgY)%3C%26Jp3*j7'SDB",
        "/01/01234567894560/235/51qIgY%29%3C%26Jp3%2Aj7%27SDB",
    ),
    ("urn:epc:class:lgtin:4012345.012345.998877", "/01/04012345123456/10/998877"),
    ("urn:epc:idpat:sgtin:4012345.012345.*", "/01/04012345123456"),
    ("urn:epc:idpat:grai:0614141.12345.*", "/8003/00614141123452"),
    ("urn:epc:idpat:gdti:0614141.12345.*", "/253/0614141123452"),
    ("urn:epc:idpat:sgcn:4012345.67890.*", "/255/4012345678901"),
    ("urn:epc:idpat:itip:4012345.012345.01.02.*", "/8006/040123451234560102"),
    ("urn:epc:idpat:cpi:0614141.123ABC.*", "/8010/0614141123ABC"),
]


@pytest.mark.parametrize(("urn", "path"), TDS_EXAMPLES, ids=[u for u, _ in TDS_EXAMPLES])
def test_epc_uri_becomes_canonical_digital_link(urn: str, path: str) -> None:
    assert to_digital_link(urn) == dl(path)
    assert normalise_identifier(urn) == dl(path)
    assert to_digital_link(dl(path)) == dl(path)  # canonical is a fixed point


def test_urn_prefix_is_case_insensitive() -> None:
    assert to_digital_link("URN:EPC:id:sgtin:0614141.812345.6789") == dl(
        "/01/80614141123458/21/6789"
    )


@PROPERTY
@given(st.text(alphabet=CSET82, min_size=1, max_size=20), st.data())
def test_serial_round_trips_through_urn_escapes_and_percent_encoding(
    serial: str, data: st.DataObject
) -> None:
    # escape what must be escaped, and sometimes other characters too, in either case
    def escape(char: str) -> str:
        if char in EPC_ESCAPED or data.draw(st.booleans()):
            code = f"{ord(char):02X}"
            return "%" + (code.lower() if data.draw(st.booleans()) else code)
        return char

    urn = "urn:epc:id:sgtin:9521568.025120." + "".join(escape(c) for c in serial)
    canonical = to_digital_link(urn)
    encoded = canonical.rsplit("/", 1)[1]
    assert set(encoded) <= set(string.ascii_letters + string.digits + "-._%")
    assert encoded == "".join(c if c.isalnum() or c in "-._" else f"%{ord(c):02X}" for c in serial)
    # the same serial as a Digital Link on another host, encoded loosely, is the same key
    loose = "".join(c if c.isalnum() or c in "-._" else f"%{ord(c):02x}" for c in serial)
    assert to_digital_link(f"https://brand.example/01/09521568251204/21/{loose}") == canonical


# --- GS1 Digital Link URIs --------------------------------------------------------------------

DIGITAL_LINKS = [
    ("https://id.gs1.org/01/09521568251204/21/10", "/01/09521568251204/21/10"),
    ("https://example.com/01/9521568251204/21/10", "/01/09521568251204/21/10"),
    ("https://example.com/shop/p/01/09521568251204", "/01/09521568251204"),
    ("http://id.gs1.org/01/036000291452", "/01/00036000291452"),
    ("https://id.gs1.org/01/96385074", "/01/00000096385074"),
    ("https://id.gs1.org/01/09521568251204/10/L1/21/10?17=261231#top", "/01/09521568251204/21/10"),
    ("https://id.gs1.org/01/09521568251204/22/V2/10/L1", "/01/09521568251204/10/L1"),
    ("https://id.gs1.org/01/09521568251204/10/L%2F1", "/01/09521568251204/10/L%2F1"),
    ("https://id.gs1.org/01/09521568251204/21/a%2fb%21", "/01/09521568251204/21/a%2Fb%21"),
    ("https://id.gs1.org/gtin/09521568251204/ser/10", "/01/09521568251204/21/10"),
    ("https://id.gs1.org/00/106141412345678908/", "/00/106141412345678908"),
    ("https://id.gs1.org/sscc/106141412345678908", "/00/106141412345678908"),
    ("https://id.gs1.org/414/0614141123452/254/0", "/414/0614141123452"),
    ("https://id.gs1.org/414/0614141123452/254/400", "/414/0614141123452/254/400"),
    ("https://id.gs1.org/417/0614141123452", "/417/0614141123452"),
    ("https://id.gs1.org/8018/061414112345678902/8019/77", "/8018/061414112345678902"),
    ("https://id.gs1.org/8006/040123451234560102/22/V/21/987", "/8006/040123451234560102/21/987"),
    ("https://id.gs1.org/8010/0614141123ABC/8011/123456789", "/8010/0614141123ABC/8011/123456789"),
    ("https://id.gs1.org/8003/00614141123452400", "/8003/00614141123452400"),
    ("https://id.gs1.org/8004/061414112345400", "/8004/061414112345400"),
    ("https://id.gs1.org/253/0614141123452", "/253/0614141123452"),
    ("https://id.gs1.org/255/401234567890104711", "/255/401234567890104711"),
    ("https://id.gs1.org/401/0614141xyz47%2F11", "/401/0614141xyz47%2F11"),
    ("https://id.gs1.org/402/06141411234567890", "/402/06141411234567890"),
    ("https://id.gs1.org/8017/061414112345678902", "/8017/061414112345678902"),
    ("https://id.gs1.org/01/01234567894560/235/TPX", "/01/01234567894560/235/TPX"),
]


@pytest.mark.parametrize(("uri", "path"), DIGITAL_LINKS, ids=[u for u, _ in DIGITAL_LINKS])
def test_digital_link_becomes_canonical(uri: str, path: str) -> None:
    assert to_digital_link(uri) == dl(path)
    assert normalise_identifier(uri) == dl(path)


def test_brief_example() -> None:
    assert to_digital_link("urn:epc:id:sgtin:9521568.025120.10") == dl("/01/09521568251204/21/10")


@pytest.mark.parametrize(
    "uri",
    [
        "urn:fourflow:eartag:CN-150102-000731",
        "https://example.com/reports/2026/01/15",
        "https://example.com/01/abc",
        "https://ranch.example/cams/gate-2",
        "urn:epc:id:gid:95100000.12345.400",
        "urn:epc:id:usdod:2S194.12345678901",
        "urn:uuid:6b0f1a52-3d7e-4c55-9a2e-1f4d7c2b9e10",
        "urn:epcglobal:cbv:bt:6901234000009:INV-2026-0311",
        "mailto:ops@example.com",
    ],
)
def test_other_absolute_uris_are_kept(uri: str) -> None:
    assert normalise_identifier(uri) == uri


# --- every bad identifier --------------------------------------------------------------------

BAD = [
    ("https://id.gs1.org/01/09521568251205", "GTIN 09521568251205 has check digit 5, expected 4"),
    ("https://example.com/01/9521568251205", "GTIN 9521568251205 has check digit 5, expected 4"),
    ("https://id.gs1.org/00/106141412345678907", "SSCC 106141412345678907 has check digit 7, expected 8"),
    ("https://id.gs1.org/414/0614141123453", "GLN 0614141123453 has check digit 3, expected 2"),
    ("https://id.gs1.org/417/0614141123451", "party GLN 0614141123451 has check digit 1, expected 2"),
    ("https://id.gs1.org/8018/061414112345678901", "GSRN of the recipient 061414112345678901 has check digit 1, expected 2"),
    ("https://id.gs1.org/402/06141411234567891", "GSIN 06141411234567891 has check digit 1, expected 0"),
    ("https://id.gs1.org/253/0614141123453400", "GDTI 0614141123453 has check digit 3, expected 2"),
    ("https://id.gs1.org/8003/00614141123453400", "GRAI 00614141123453 has check digit 3, expected 2"),
    ("https://id.gs1.org/8006/040123451234570102/21/1", "GTIN 04012345123457 has check digit 7, expected 6"),
    ("https://id.gs1.org/01/123", "GTIN '123' has 3 digits; it must have 8, 12, 13 or 14"),
    ("https://id.gs1.org/01/09521568251", "GTIN '09521568251' has 11 digits"),
    ("https://id.gs1.org/01/09521568251204/21/123456789012345678901", "serial number '123456789012345678901' has 21 characters; it must have 1 to 20"),
    ("https://id.gs1.org/01/09521568251204/21/a%20b", "serial number 'a b' contains ' ', which is not in the GS1 character set 82"),
    ("https://id.gs1.org/01/09521568251204/21/caf%C3%A9", "is not in the GS1 character set 82"),
    ("https://id.gs1.org/8010/0614141abc", "CPID '0614141abc' contains 'a', which is not in the GS1 character set 39"),
    ("https://id.gs1.org/8003/10614141123452400", "GRAI '10614141123452400' must start with 0"),
    ("https://id.gs1.org/00/10614141234567890X", "SSCC '10614141234567890X' must be all digits"),
    ("https://id.gs1.org/255/4012345678901A", "GCN '4012345678901A' must end in a serial of digits"),
    ("https://id.gs1.org/253/061414112345X400", "GDTI '061414112345X400' must start with 13 digits"),
    ("https://id.gs1.org/21/5/01/09521568251204", "is not a GS1 Digital Link URI: its path names no GS1 primary key"),
    ("https://id.gs1.org/01/09521568251204/21/1/10/L", "AIs 21 10 are not qualifiers of AI 01 in order"),
    ("https://id.gs1.org/01/09521568251204/254/1", "AIs 254 are not qualifiers of AI 01 in order"),
    ("https://id.gs1.org/01/09521568251204/21", "its path does not end in AI/value pairs"),
    ("https://id.gs1.org/10/L1", "its path names no GS1 primary key"),
    ("https://id.gs1.org/01/09521568251204/21/%zz", "is not an AI and its value"),
    ("urn:epc:id:sgtin:0614141.10734.1", "GS1 Company Prefix and item reference (with indicator) must have 13 digits together, got 12"),
    ("urn:epc:id:sgtin:06141.1073460.1", "GS1 Company Prefix must have 6 to 12 digits, got 5"),
    ("urn:epc:id:sgtin:0614141.107346", "must have the form urn:epc:id:sgtin:CompanyPrefix.ItemRef.Serial"),
    ("urn:epc:id:sgtin:0614141.1O7346.1", "item reference (with indicator) '1O7346' must be digits"),
    ("urn:epc:id:sgtin:0614141.107346.A/B", "serial contains '/', which an EPC URI must escape"),
    ("urn:epc:id:sgtin:0614141.107346.A%2", "serial has a '%' that starts no %HH escape"),
    ("urn:epc:id:sgtin:0614141.107346.caf%C3%A9", "is not in the GS1 character set 82"),
    ("urn:epc:id:sgtin:0614141.107346.123456789012345678901", "serial number '123456789012345678901' has 21 characters"),
    ("urn:epc:id:sscc:0614141.123456789", "must have 17 digits together, got 16"),
    ("urn:epc:id:sgln:0614141.12345.", "GLN extension '' has 0 characters"),
    ("urn:epc:id:grai:0614141.12345.", "the serial is empty"),
    ("urn:epc:id:giai:0614141.", "prefix and asset reference must have 8 to 30 characters"),
    ("urn:epc:id:giai:0614141.12345678901234567890123456", "prefix and asset reference must have 8 to 30 characters"),
    ("urn:epc:id:cpi:0614141.123ABC.12a", "serial '12a' must be digits"),
    ("urn:epc:id:itip:4012345.012345.1.02.987", "piece must have 2 digits, got 1"),
    ("urn:epc:id:sgtn:0614141.107346.1", "unknown EPC scheme 'sgtn'"),
    ("urn:epc:id:sgtin", "has no value after the scheme"),
    ("urn:epc:tag:sgtin-96:3.0614141.812345.6789", "only urn:epc:id, urn:epc:class and urn:epc:idpat URIs name a GS1 key"),
    ("urn:epc:class:lgtn:4012345.012345.1", "unknown EPC class scheme 'lgtn'"),
    ("urn:epc:idpat:sgtin:4012345.*.*", "only a pattern whose serial part alone is '*' names a GS1 class"),
    ("urn:epc:idpat:sscc:4012345.*", "EPC pattern scheme 'sscc' names no GS1 class"),
]  # fmt: skip


@pytest.mark.parametrize(("uri", "message"), BAD, ids=[u for u, _ in BAD])
def test_bad_identifier_is_rejected_with_what_is_wrong(uri: str, message: str) -> None:
    for convert in (to_digital_link, normalise_identifier):
        with pytest.raises(InvalidInput) as err:
            convert(uri)
        assert message in err.value.message
        assert err.value.code == "invalid_identifier"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("shipping", "'shipping' is not an absolute URI"),
        ("", "'' is not an absolute URI"),
        ("urn:epc:id:sgtin:0614141.107346.A B", "is not an absolute URI"),
        (" https://id.gs1.org/01/09521568251204", "is not an absolute URI"),
        ("1:2", "is not an absolute URI"),
        (42, "42 is not an absolute URI"),
    ],
)
def test_normalise_identifier_needs_an_absolute_uri(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        normalise_identifier(value)  # type: ignore[arg-type]
    assert message in err.value.message
    assert err.value.code == "invalid_identifier"


@pytest.mark.parametrize(
    "uri",
    ["urn:fourflow:eartag:CN-1", "https://example.com/a", "urn:epc:id:gid:95100000.12345.400"],
)
def test_to_digital_link_refuses_what_is_no_gs1_key(uri: str) -> None:
    with pytest.raises(
        InvalidInput, match="neither an EPC URI of a GS1 key nor a GS1 Digital Link"
    ):
        to_digital_link(uri)
