"""GS1 keys: check digits, EPC URIs, GS1 Digital Link URIs, and their one canonical form.

fourflow writes every GS1 key it meets as its constrained canonical GS1 Digital Link URI,
the form the GS1 CBV 2.0 event hash requires (docs/epcis-event-hash.md, rules 16-17):

    https://id.gs1.org/{primary key AI}/{value}[/{qualifier AI}/{value}]

- host id.gs1.org, numeric AIs, no query string, no fragment;
- only the finest level of identification: 01 | 01 21 | 01 10 | 01 235 | 8006 | 8006 21 |
  8006 10 | 8010 | 8010 8011 | 414 | 414 254 | 00 253 255 401 402 417 8003 8004 8017 8018
  (a serial number makes the lot redundant; a consumer product variant (22) and a
  service relation instance number (8019) are dropped);
- GTIN-8/12/13 are left-padded to GTIN-14, an SSCC is 18 digits, a GLN 13;
- check digits are computed for EPC URIs and verified for Digital Link URIs;
- an SGLN extension "0" means "no extension" (EPC Tag Data Standard), so
  ``urn:epc:id:sgln:CP.LR.0`` and ``.../414/{gln}/254/0`` both become ``.../414/{gln}``.

Serials, lots and other alphanumeric values use the GS1 AI encodable character set 82
(CPIDs set 39). Escapes are undone on input (``%2F`` in an EPC URI or a Digital Link
path segment is ``/``); on output every character that RFC 3986 does not list as
unreserved is percent-encoded with upper-case hex, which is what GS1 Digital Link URI
Syntax 1.2 asks for (``! " % & ' ( ) * + , / : ; < = > ?``):

    urn:epc:id:sgtin:0614141.107346.A%2FB!1  ->  https://id.gs1.org/01/10614141073464/21/A%2FB%211

Accepted EPC URIs (EPC Tag Data Standard): urn:epc:id: sgtin sscc sgln grai giai gsrn
gsrnp gdti sgcn cpi ginc gsin itip pgln upui; urn:epc:class:lgtin; urn:epc:idpat: sgtin
itip grai gdti sgcn cpi upui whose serial part alone is ``*``. Other EPC schemes (gid,
usdod, adi, bic, imovn) name no GS1 key. A Digital Link URI may be on any host, under
any path prefix, with AI short names (gtin, lot, ser, ...) and a query string.

Every problem raises ``InvalidInput`` with code ``invalid_identifier`` and a message that
names what is wrong ("GTIN 09521568251205 has check digit 5, expected 4").
"""

from __future__ import annotations

import string
from typing import Final
from urllib.parse import urlsplit

from ledger.errors import InvalidInput

__all__ = [
    "CANONICAL_HOST",
    "check_digit",
    "is_valid_check_digit",
    "normalise_identifier",
    "to_digital_link",
]

CANONICAL_HOST: Final = "https://id.gs1.org"

_CSET82: Final = frozenset(string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_")
_CSET39: Final = frozenset(string.ascii_uppercase + string.digits + "#-/")
_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._")
# characters an EPC URI may carry unescaped (EPC Tag Data Standard, URI form of GS3A3)
_EPC_URI_RAW: Final = frozenset(string.ascii_letters + string.digits + "!'()*+,-.:;=_")

Pairs = tuple[tuple[str, str], ...]  # (AI, value) in Digital Link path order

# AI -> (what it is called in messages, kind, shortest, longest); kinds:
#   "key": all digits, last one a check digit   "digits": all digits
#   "x82": GS1 character set 82                 "x39": GS1 character set 39 (CPID)
#   "gtin", "gdti", "gcn", "grai", "itip": a keyed digit prefix and a tail, see _check_value
_AIS: Final[dict[str, tuple[str, str, int, int]]] = {
    "00": ("SSCC", "key", 18, 18),
    "01": ("GTIN", "gtin", 8, 14),
    "10": ("batch/lot number", "x82", 1, 20),
    "21": ("serial number", "x82", 1, 20),
    "22": ("consumer product variant", "x82", 1, 20),
    "235": ("third-party controlled serial number", "x82", 1, 28),
    "253": ("GDTI", "gdti", 13, 30),
    "254": ("GLN extension", "x82", 1, 20),
    "255": ("GCN", "gcn", 13, 25),
    "401": ("GINC", "x82", 1, 30),
    "402": ("GSIN", "key", 17, 17),
    "414": ("GLN", "key", 13, 13),
    "417": ("party GLN", "key", 13, 13),
    "8003": ("GRAI", "grai", 14, 30),
    "8004": ("GIAI", "x82", 1, 30),
    "8006": ("ITIP", "itip", 18, 18),
    "8010": ("CPID", "x39", 1, 30),
    "8011": ("CPID serial number", "digits", 1, 12),
    "8017": ("GSRN of the provider", "key", 18, 18),
    "8018": ("GSRN of the recipient", "key", 18, 18),
    "8019": ("service relation instance number", "digits", 1, 10),
}
# primary key AI -> key qualifier AIs in the order a Digital Link path must give them
_QUALIFIERS: Final[dict[str, tuple[str, ...]]] = {
    "00": (), "01": ("22", "10", "21", "235"), "253": (), "255": (), "401": (), "402": (),
    "414": ("254",), "417": (), "8003": (), "8004": (), "8006": ("22", "10", "21"),
    "8010": ("8011",), "8017": ("8019",), "8018": ("8019",),
}  # fmt: skip
# GS1 Digital Link 1.2 alphabetic short names for AIs
_SHORT_NAMES: Final = {
    "sscc": "00", "gtin": "01", "lot": "10", "ser": "21", "cpv": "22", "gdti": "253",
    "glnx": "254", "gcn": "255", "ginc": "401", "gsin": "402", "gln": "414", "party": "417",
    "grai": "8003", "giai": "8004", "itip": "8006", "cpid": "8010", "cpsn": "8011",
    "gsrnp": "8017", "gsrn": "8018", "srin": "8019",
}  # fmt: skip
_NON_GS1_EPC_SCHEMES: Final = frozenset({"gid", "usdod", "adi", "bic", "imovn"})


def _fail(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_identifier")


# --- check digits ----------------------------------------------------------------------


def check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit for ``digits`` (a key without its check digit).

    Weights 3, 1, 3, ... from the right; the digit brings the sum to a multiple of ten.
    """
    if not digits or not digits.isascii() or not digits.isdigit():
        raise _fail(f"a check digit needs a string of digits, got {digits!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str(-total % 10)


def is_valid_check_digit(key: str) -> bool:
    """Whether the last digit of ``key`` (two or more digits) is its GS1 check digit."""
    if len(key) < 2 or not key.isascii() or not key.isdigit():
        return False
    return check_digit(key[:-1]) == key[-1]


def _verify_check_digit(label: str, key: str) -> None:
    expected = check_digit(key[:-1])
    if key[-1] != expected:
        raise _fail(f"{label} {key} has check digit {key[-1]}, expected {expected}")


# --- AI values -------------------------------------------------------------------------


def _charset_problem(label: str, value: str, charset: frozenset[str], name: str) -> str | None:
    for char in value:
        if char not in charset:
            return f"{label} {value!r} contains {char!r}, which is not in {name}"
    return None


def _check_value(ai: str, value: str) -> str | None:
    """Why ``value`` is not a well-formed value of ``ai`` (length, characters), or None.

    Check digits are not looked at here; see _verify_keys.
    """
    label, kind, shortest, longest = _AIS[ai]
    if kind == "gtin" and len(value) not in (8, 12, 13, 14):
        return f"{label} {value!r} has {len(value)} digits; it must have 8, 12, 13 or 14"
    if not shortest <= len(value) <= longest:
        size = str(shortest) if shortest == longest else f"{shortest} to {longest}"
        return f"{label} {value!r} has {len(value)} characters; it must have {size}"
    if kind == "x82":
        return _charset_problem(label, value, _CSET82, "the GS1 character set 82")
    if kind == "x39":
        return _charset_problem(label, value, _CSET39, "the GS1 character set 39")
    if kind == "grai" and not value.startswith("0"):
        return f"{label} {value!r} must start with 0"
    head = {"gdti": 13, "gcn": 13, "grai": 14}.get(kind, len(value))
    if not value[:head].isascii() or not value[:head].isdigit():
        shape = "be all digits" if head == len(value) else f"start with {head} digits"
        return f"{label} {value!r} must {shape}"
    tail = value[head:]
    if kind == "gcn" and tail and not (tail.isascii() and tail.isdigit()):
        return f"{label} {value!r} must end in a serial of digits"
    if kind in ("gdti", "grai"):
        return _charset_problem(label, tail, _CSET82, "the GS1 character set 82")
    return None


def _verify_keys(pairs: Pairs) -> None:
    """Raise if a check digit in ``pairs`` is wrong."""
    for ai, value in pairs:
        label, kind, _, _ = _AIS[ai]
        if kind == "key" or kind == "gtin":
            _verify_check_digit(label, value)
        elif kind == "itip":
            _verify_check_digit("GTIN", value[:14])
        elif kind in ("gdti", "gcn"):
            _verify_check_digit(label, value[:13])
        elif kind == "grai":
            _verify_check_digit(label, value[:14])


def _finest(pairs: Pairs) -> Pairs:
    """Keep the primary key and only its finest qualifier (CBV 2.0 rule 17 (III))."""
    primary, qualifiers = pairs[0], dict(pairs[1:])
    for ai in ("21", "235", "10", "8011", "254"):
        if ai in qualifiers and not (ai == "254" and qualifiers[ai] == "0"):
            return (primary, (ai, qualifiers[ai]))
    return (primary,)


def _encode(value: str) -> str:
    return "".join(c if c in _UNRESERVED else f"%{ord(c):02X}" for c in value)


def _format(pairs: Pairs) -> str:
    ai, value = pairs[0]
    if ai == "01":
        pairs = (("01", value.zfill(14)), *pairs[1:])
    return CANONICAL_HOST + "".join(f"/{ai}/{_encode(value)}" for ai, value in _finest(pairs))


def _canonical(pairs: Pairs) -> str:
    for ai, value in pairs:
        problem = _check_value(ai, value)
        if problem is not None:
            raise _fail(problem)
    _verify_keys(pairs)
    return _format(pairs)


# --- EPC URIs (EPC Tag Data Standard) ---------------------------------------------------


def _unescape_epc(uri: str, label: str, text: str) -> str:
    """Undo the %HH escapes of one EPC URI component; reject characters left raw."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            code = text[i + 1 : i + 3]
            if len(code) != 2 or not all(c in string.hexdigits for c in code):
                raise _fail(f"{uri}: {label} has a '%' that starts no %HH escape")
            out.append(chr(int(code, 16)))
            i += 3
            continue
        if char not in _EPC_URI_RAW:
            raise _fail(f"{uri}: {label} contains {char!r}, which an EPC URI must escape")
        out.append(char)
        i += 1
    return "".join(out)


def _digits(uri: str, label: str, text: str, *, size: int | None = None) -> str:
    if text and not (text.isascii() and text.isdigit()):
        raise _fail(f"{uri}: {label} {text!r} must be digits")
    if size is not None and len(text) != size:
        raise _fail(f"{uri}: {label} must have {size} digits, got {len(text)}")
    return text


def _company_and_ref(uri: str, parts: list[str], ref: str, total: int) -> str:
    """GS1 Company Prefix (6-12 digits) + reference, ``total`` digits together."""
    prefix = _digits(uri, "GS1 Company Prefix", parts[0])
    if not 6 <= len(prefix) <= 12:
        raise _fail(f"{uri}: GS1 Company Prefix must have 6 to 12 digits, got {len(prefix)}")
    reference = _digits(uri, ref, parts[1])
    if len(prefix) + len(reference) != total:
        raise _fail(
            f"{uri}: GS1 Company Prefix and {ref} must have {total} digits together, "
            f"got {len(prefix) + len(reference)}"
        )
    return prefix + reference


def _with_check(digits: str) -> str:
    return digits + check_digit(digits)


def _gtin(uri: str, parts: list[str]) -> str:
    """GTIN-14 from CompanyPrefix.IndicatorItemRef (indicator digit moves to the front)."""
    _company_and_ref(uri, parts, "item reference (with indicator)", 13)
    return _with_check(parts[1][:1] + parts[0] + parts[1][1:])


def _split(uri: str, body: str, count: int, shape: str) -> list[str]:
    parts = body.split(".", count - 1)
    if len(parts) != count:
        raise _fail(f"{uri} must have the form {shape}")
    return parts


def _alnum_ref(uri: str, parts: list[str], label: str, longest: int) -> str:
    prefix = _digits(uri, "GS1 Company Prefix", parts[0])
    if not 6 <= len(prefix) <= 12:
        raise _fail(f"{uri}: GS1 Company Prefix must have 6 to 12 digits, got {len(prefix)}")
    reference = _unescape_epc(uri, label, parts[1])
    if not reference or len(prefix) + len(reference) > longest:
        raise _fail(
            f"{uri}: prefix and {label} must have {len(prefix) + 1} to {longest} characters"
        )
    return prefix + reference


def _epc_id(uri: str, scheme: str, body: str) -> Pairs:
    if scheme == "sgtin":
        p = _split(uri, body, 3, "urn:epc:id:sgtin:CompanyPrefix.ItemRef.Serial")
        return (("01", _gtin(uri, p)), ("21", _unescape_epc(uri, "serial", p[2])))
    if scheme == "sscc":
        p = _split(uri, body, 2, "urn:epc:id:sscc:CompanyPrefix.SerialRef")
        _company_and_ref(uri, p, "extension and serial reference", 17)
        return (("00", _with_check(p[1][:1] + p[0] + p[1][1:])),)
    if scheme == "sgln":
        p = _split(uri, body, 3, "urn:epc:id:sgln:CompanyPrefix.LocationRef.Extension")
        gln = _with_check(_company_and_ref(uri, p, "location reference", 12))
        return (("414", gln), ("254", _unescape_epc(uri, "extension", p[2])))
    if scheme in ("grai", "gdti", "sgcn"):
        ai, ref = {"grai": ("8003", "asset type"), "gdti": ("253", "document type"),
                   "sgcn": ("255", "coupon reference")}[scheme]  # fmt: skip
        p = _split(uri, body, 3, f"urn:epc:id:{scheme}:CompanyPrefix.{ref.title()}.Serial")
        key = _with_check(_company_and_ref(uri, p, ref, 12))
        serial = _unescape_epc(uri, "serial", p[2])
        if not serial:
            raise _fail(f"{uri}: the serial is empty")
        return ((ai, ("0" + key if scheme == "grai" else key) + serial),)
    if scheme in ("giai", "ginc"):
        p = _split(uri, body, 2, f"urn:epc:id:{scheme}:CompanyPrefix.Reference")
        label = "asset reference" if scheme == "giai" else "consignment reference"
        return (("8004" if scheme == "giai" else "401", _alnum_ref(uri, p, label, 30)),)
    if scheme in ("gsrn", "gsrnp", "gsin", "pgln"):
        ai, total = {"gsrn": ("8018", 17), "gsrnp": ("8017", 17), "gsin": ("402", 16),
                     "pgln": ("417", 12)}[scheme]  # fmt: skip
        p = _split(uri, body, 2, f"urn:epc:id:{scheme}:CompanyPrefix.Reference")
        return ((ai, _with_check(_company_and_ref(uri, p, "reference", total))),)
    if scheme == "cpi":
        p = _split(uri, body, 3, "urn:epc:id:cpi:CompanyPrefix.PartRef.Serial")
        return (("8010", _alnum_ref(uri, p, "component/part reference", 30)),
                ("8011", _digits(uri, "serial", p[2])))  # fmt: skip
    if scheme == "itip":
        p = _split(uri, body, 5, "urn:epc:id:itip:CompanyPrefix.ItemRef.Piece.Total.Serial")
        itip = _gtin(uri, p) + _digits(uri, "piece", p[2], size=2)
        itip += _digits(uri, "total", p[3], size=2)
        return (("8006", itip), ("21", _unescape_epc(uri, "serial", p[4])))
    if scheme == "upui":
        p = _split(uri, body, 3, "urn:epc:id:upui:CompanyPrefix.ItemRef.TPX")
        return (("01", _gtin(uri, p)), ("235", _unescape_epc(uri, "TPX", p[2])))
    raise _fail(f"{uri}: unknown EPC scheme {scheme!r}")


def _epc_pattern(uri: str, scheme: str, body: str) -> Pairs:
    """A class-level pattern: every field given but the last, which is ``*``."""
    if scheme not in ("sgtin", "upui", "grai", "gdti", "sgcn", "itip", "cpi"):
        raise _fail(f"{uri}: EPC pattern scheme {scheme!r} names no GS1 class")
    head, dot, star = body.rpartition(".")
    if not dot or star != "*" or "*" in head:
        raise _fail(f"{uri}: only a pattern whose serial part alone is '*' names a GS1 class")
    if scheme == "itip":
        p = _split(uri, head, 4, "urn:epc:idpat:itip:CompanyPrefix.ItemRef.Piece.Total.*")
        itip = _gtin(uri, p) + _digits(uri, "piece", p[2], size=2)
        return (("8006", itip + _digits(uri, "total", p[3], size=2)),)
    if scheme == "cpi":
        p = _split(uri, head, 2, "urn:epc:idpat:cpi:CompanyPrefix.PartRef.*")
        return (("8010", _alnum_ref(uri, p, "component/part reference", 30)),)
    p = _split(uri, head, 2, f"urn:epc:idpat:{scheme}:CompanyPrefix.Reference.*")
    if scheme in ("sgtin", "upui"):
        return (("01", _gtin(uri, p)),)
    ai = {"grai": "8003", "gdti": "253", "sgcn": "255"}[scheme]
    key = _with_check(_company_and_ref(uri, p, "reference", 12))
    return ((ai, "0" + key if scheme == "grai" else key),)


def _parse_epc_uri(uri: str) -> Pairs | None:
    """The GS1 key of an EPC pure identity, class or pattern URI; None for non-GS1 schemes."""
    kind, scheme, body = [*uri[len("urn:epc:") :].split(":", 2), "", ""][:3]
    if kind not in ("id", "class", "idpat"):
        raise _fail(f"{uri}: only urn:epc:id, urn:epc:class and urn:epc:idpat URIs name a GS1 key")
    if scheme in _NON_GS1_EPC_SCHEMES:
        return None
    if not body:
        raise _fail(f"{uri} has no value after the scheme")
    if kind == "id":
        return _epc_id(uri, scheme, body)
    if kind == "class":
        if scheme != "lgtin":
            raise _fail(f"{uri}: unknown EPC class scheme {scheme!r}")
        p = _split(uri, body, 3, "urn:epc:class:lgtin:CompanyPrefix.ItemRef.Lot")
        return (("01", _gtin(uri, p)), ("10", _unescape_epc(uri, "lot", p[2])))
    return _epc_pattern(uri, scheme, body)


# --- GS1 Digital Link URIs ---------------------------------------------------------------


def _percent_decode(segment: str) -> str | None:
    out: list[str] = []
    i = 0
    while i < len(segment):
        if segment[i] == "%":
            code = segment[i + 1 : i + 3]
            if len(code) != 2 or not all(c in string.hexdigits for c in code):
                return None
            out.append(chr(int(code, 16)))
            i += 3
        else:
            out.append(segment[i])
            i += 1
    return "".join(out)


def _path_pairs(segments: list[str]) -> Pairs | str:
    """(AI, value) pairs if ``segments`` is a key and qualifiers, else why not."""
    if len(segments) % 2:
        return "its path does not end in AI/value pairs"
    pairs: list[tuple[str, str]] = []
    for index in range(0, len(segments), 2):
        ai = _SHORT_NAMES.get(segments[index], segments[index])
        value = _percent_decode(segments[index + 1])
        if ai not in _AIS or value is None:
            return f"{segments[index]!r}/{segments[index + 1]!r} is not an AI and its value"
        pairs.append((ai, value))
    primary, qualifiers = pairs[0][0], [ai for ai, _ in pairs[1:]]
    allowed = _QUALIFIERS[primary]
    positions = [allowed.index(ai) if ai in allowed else -1 for ai in qualifiers]
    if -1 in positions or positions != sorted(set(positions)):
        return f"AIs {' '.join(qualifiers)} are not qualifiers of AI {primary} in order"
    for ai, value in pairs:
        problem = _check_value(ai, value)
        if problem is not None:
            return problem
    return tuple(pairs)


def _parse_digital_link(uri: str) -> Pairs | None:
    """The GS1 key of a Digital Link URI on any host; None if ``uri`` is not one.

    Elsewhere than on id.gs1.org the path may start with segments of the host's own: the
    key is the first segment naming a primary key AI from which the rest of the path
    reads as that key and its qualifiers. On id.gs1.org a path that is not exactly a
    well-formed key is an error; on another host it makes ``uri`` some other URI.
    """
    parts = urlsplit(uri)
    segments = parts.path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()
    problem = "its path names no GS1 primary key"
    on_gs1_host = parts.netloc.lower() == "id.gs1.org"
    for start, segment in enumerate(segments[:1] if on_gs1_host else segments):
        if _SHORT_NAMES.get(segment, segment) in _QUALIFIERS:
            found = _path_pairs(segments[start:])
            if not isinstance(found, str):
                return found
            problem = found
    if on_gs1_host:
        raise _fail(f"{uri} is not a GS1 Digital Link URI: {problem}")
    return None


# --- public ------------------------------------------------------------------------------


def _is_epc_uri(value: str) -> bool:
    return value[:8].lower() == "urn:epc:"


def _is_web_uri(value: str) -> bool:
    return value[:8].lower() == "https://" or value[:7].lower() == "http://"


def _is_absolute_uri(value: str) -> bool:
    scheme, colon, rest = value.partition(":")
    return bool(
        colon
        and rest
        and scheme[:1].isascii()
        and scheme[:1].isalpha()
        and all(c.isascii() and (c.isalnum() or c in "+-.") for c in scheme)
        and not any(c.isspace() or ord(c) < 0x20 for c in value)
    )


def to_digital_link(uri: str) -> str:
    """The constrained canonical GS1 Digital Link URI of a GS1 key (see module docstring).

    ``uri`` is an EPC URI of a GS1 key or a GS1 Digital Link URI; anything else raises.
    """
    pairs: Pairs | None = None
    if _is_epc_uri(uri):
        pairs = _parse_epc_uri("urn:epc:" + uri[8:])
    elif _is_web_uri(uri):
        pairs = _parse_digital_link(uri)
    if pairs is None:
        raise _fail(f"{uri!r} is neither an EPC URI of a GS1 key nor a GS1 Digital Link URI")
    return _canonical(pairs)


def normalise_identifier(value: str) -> str:
    """A GS1 key as its canonical Digital Link URI; any other absolute URI unchanged.

    A private identifier (``urn:fourflow:eartag:...``, ``https://example.com/...``, an EPC
    URI of a non-GS1 scheme such as gid) is kept as it is. A value that is not an
    absolute URI, and a GS1 key that is malformed or has a wrong check digit, raise.
    """
    if not isinstance(value, str) or not _is_absolute_uri(value):
        raise _fail(f"{value!r} is not an absolute URI")
    if _is_epc_uri(value):
        pairs = _parse_epc_uri("urn:epc:" + value[8:])
        return value if pairs is None else _canonical(pairs)
    if _is_web_uri(value):
        pairs = _parse_digital_link(value)
        return value if pairs is None else _canonical(pairs)
    return value
