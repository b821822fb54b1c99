"""The PII gate: find personal data in example text with regexes plus validation.

Each kind has a loose candidate regex and a validator that decides: Luhn for card numbers,
ISO 7064 mod-97 for IBANs, the SSA's never-issued ranges for SSNs, `ipaddress` for IPs, and for
phone numbers a set of phone-like groupings plus a look at the words just before the number
("order", "invoice", a currency) so that references and amounts are not taken for phones.
The gate either quarantines an example (reason `pii_<kind>`, one for each kind it holds) or
replaces it with a redacted copy (reason `pii_redacted`). Flag details give kinds and counts,
never the matched text.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sftline.data.example import Example
from sftline.errors import ConfigError
from sftline.gates.base import Flag, GateOutcome

PII_KINDS: tuple[str, ...] = ("email", "phone", "credit_card", "iban", "ssn", "ip_address")
PLACEHOLDERS: dict[str, str] = {kind: f"<{kind.upper()}>" for kind in PII_KINDS}
# When spans overlap the lower rank wins: a checksum-validated number beats a phone grouping.
_RANK = {"credit_card": 0, "iban": 0, "ssn": 0, "email": 1, "ip_address": 1, "phone": 2}


@dataclass(frozen=True, slots=True)
class PiiMatch:
    kind: str
    start: int
    end: int
    text: str


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number; separators are ignored."""
    digits = re.sub(r"[ -]", "", digits)
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# Total IBAN length per country (ISO 13616 registry) for the countries we meet most often.
_IBAN_LENGTHS = {
    "AD": 24,
    "AE": 23,
    "AT": 20,
    "BE": 16,
    "BG": 22,
    "BR": 29,
    "CH": 21,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "EE": 20,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "GR": 27,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IS": 26,
    "IT": 27,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MT": 31,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "RO": 24,
    "SA": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TR": 26,
}


def iban_valid(candidate: str) -> bool:
    """Country code, 2 check digits, BBAN; known length for the country; mod 97 == 1."""
    iban = re.sub(r"\s", "", candidate).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    if len(iban) != _IBAN_LENGTHS.get(iban[:2], len(iban)):
        return False
    # Move the first 4 characters to the end, letters become 10..35, the number mod 97 must be 1.
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![\w-]|\.\w|:[\w/])"
)
# `icon@2x.png` has the shape of an address; these "TLDs" are file extensions. A `:path` after
# the host (`git@github.com:org/repo`) marks an scp-style remote, not a mailbox.
_FILE_EXTENSIONS = _word_set(
    "png jpg jpeg gif svg webp bmp ico tif tiff pdf txt csv json js css html zip mp4 mp3"
)
_CARD = re.compile(r"(?<![\w.,/+-])\d(?:[ -]?\d){12,18}(?![\w/-]|[.,]\d)")
# Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37, JCB 35, Diners 36/38/300-305,
# Discover 6011/644-649/65 and Maestro 50/6x (a leading 6 covers those).
_CARD_IIN = re.compile(r"4|5[0-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[4-8]|30[0-5]|6")
_CARD_GROUPS = ((4, 6, 5), (4, 6, 4))
_IBAN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)")
_SSN = re.compile(r"(?<![\w.-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-]|[.,]\d)")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}"
    r"(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\d)"
)
# A run of digits with single separators (one way to match each, so no exponential backtracking),
# optionally `+` and parentheses: every phone candidate.
_PHONE_RUN = re.compile(r"(?<![\w#$€£¥₹+.,/:-])\+?\(?\d(?:\)?(?: ?[.-] ?| )?\(?\d)*(?![\w/:%€£¥₹]|[.,]\d)")
_PHONE_SHAPES = (
    re.compile(r"\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,6}))+"),  # +44 20 7946 0958
    # North American: (202) 555-0143, 202.555.0143, 1-800-555-0199.
    re.compile(r"(?:1[ .-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])[2-9]\d\d[ .-]\d{4}"),
    # National with trunk 0: 020 7946 0958, 06 12 34 56 78, (030) 1234567, 07700 900123.
    re.compile(r"(?:\(0\d{1,4}\) ?|0\d{1,4}[ .-])\d{2,8}(?:[ .-]\d{2,8}){0,3}"),
)
_UNGROUPED_PHONE = re.compile(r"0\d{9,10}|[2-9]\d{9}")
_DATE = re.compile(r"\d{1,2}[./-]\d{1,2}[./-](?:19|20)\d\d|(?:19|20)\d\d[./-]\d{1,2}[./-]\d{1,2}")
_PHONE_CUES = _word_set(
    "phone tel telephone call mobile cell cellphone fax text sms whatsapp ring dial reach landline contact"
)
_REFERENCE_WORDS = _word_set(
    "order invoice inv ref reference tracking ticket case po sku serial sn account acct "
    "booking confirmation conf transaction txn id receipt policy claim rma parcel shipment "
    "awb pnr item part product model lot batch imei isbn voucher coupon code pin reservation "
    "customer member membership loyalty"
)
_CURRENCY_WORDS = _word_set(
    "usd eur gbp jpy chf cad aud inr cny rmb sek nok dkk pln czk brl mxn rs kr zl "
    "dollars euros pounds yen rupees francs"
)
_CARD_CUES = _word_set("card visa mastercard amex discover jcb credit debit cc pay paid charged")
_VERSION_WORDS = _word_set("version ver v build release firmware")


def _words_before(text: str, start: int, count: int = 3) -> list[str]:
    """Up to `count` words in the 40 characters before `start`, nearest first, lowercased."""
    words = re.findall(r"[A-Za-z]+", text[max(0, start - 40) : start])
    return [word.lower() for word in reversed(words)][:count]


def _labelled(text: str, start: int, cues: frozenset[str]) -> str | None:
    """What the nearest telling word of the last 3 calls the number: "cue", "reference", None."""
    for word in _words_before(text, start):
        word = word[:-1] if word.endswith("s") and word[:-1] in _REFERENCE_WORDS else word
        if word in cues:
            return "cue"
        if word in _REFERENCE_WORDS or word in _CURRENCY_WORDS:
            return "reference"
    return None


def _is_phone(text: str, match: re.Match[str]) -> bool:
    candidate, start, end = match.group(), match.start(), match.end()
    digits = re.sub(r"\D", "", candidate)
    if not 9 <= len(digits) <= 15 or "  " in candidate or _DATE.search(candidate):
        return False
    after = re.match(r"\s*([A-Za-z]+)", text[end : end + 12])
    if re.search(r"[$€£¥₹]\s?$", text[max(0, start - 2) : start]) or (
        after and after.group(1).lower() in _CURRENCY_WORDS
    ):
        return False
    label = _labelled(text, start, _PHONE_CUES)
    if label == "reference":
        return False
    if label == "cue" and _UNGROUPED_PHONE.fullmatch(candidate):
        return True
    return any(shape.fullmatch(candidate) for shape in _PHONE_SHAPES)


def _is_card(text: str, match: re.Match[str]) -> bool:
    candidate = match.group()
    digits = re.sub(r"\D", "", candidate)
    groups = tuple(len(group) for group in re.split(r"[ -]", candidate))
    grouped = (
        len(groups) == 1
        or groups in _CARD_GROUPS
        or (all(size == 4 for size in groups[:-1]) and 1 <= groups[-1] <= 4)
    )
    # An IMEI or a tracking number can pass Luhn; a reference label outvotes the checksum.
    if _labelled(text, match.start(), _CARD_CUES) == "reference":
        return False
    return grouped and bool(_CARD_IIN.match(digits)) and luhn_valid(digits)


def _is_ip(text: str, match: re.Match[str]) -> bool:
    """`ipaddress` accepts it, it is no netmask (255.x), no "version" word names it."""
    if match.group().startswith("255.") or any(
        word in _VERSION_WORDS for word in _words_before(text, match.start(), 1)
    ):
        return False
    try:
        ipaddress.ip_address(match.group())
    except ValueError:
        return False
    return True


def _iban_spans(text: str) -> Iterator[tuple[int, int]]:
    # The candidate may have swallowed a following word of 1-4 capitals; drop trailing groups
    # until the checksum holds (mod 97 makes a false accept after trimming ~1%).
    for match in _IBAN.finditer(text):
        candidate = match.group()
        while len(re.sub(r"\s", "", candidate)) >= 15:
            if iban_valid(candidate):
                yield match.start(), match.start() + len(candidate)
                break
            candidate = re.sub(r" ?[A-Z0-9]{1,4}$", "", candidate)


_CHECKS: dict[str, tuple[tuple[re.Pattern[str], ...], Callable[[str, re.Match[str]], bool]]] = {
    "email": ((_EMAIL,), lambda _, m: m.group(1).lower() not in _FILE_EXTENSIONS),
    "phone": ((_PHONE_RUN,), _is_phone),
    "credit_card": ((_CARD,), _is_card),
    "ssn": ((_SSN,), lambda _, m: True),
    "ip_address": ((_IPV4, _IPV6), _is_ip),
}


def _candidates(text: str, kind: str) -> Iterator[tuple[int, int]]:
    if kind == "iban":
        yield from _iban_spans(text)
        return
    patterns, valid = _CHECKS[kind]
    for pattern in patterns:
        yield from (m.span() for m in pattern.finditer(text) if valid(text, m))


def find_pii(text: str, kinds: Collection[str] = PII_KINDS) -> list[PiiMatch]:
    """Non-overlapping matches sorted by start; on overlap the more specific kind wins."""
    unknown = set(kinds) - set(PII_KINDS)
    if unknown:
        raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {', '.join(PII_KINDS)}")
    found = [PiiMatch(k, s, e, text[s:e]) for k in kinds for s, e in _candidates(text, k)]
    found.sort(key=lambda m: (_RANK[m.kind], m.start, -(m.end - m.start)))
    kept: list[PiiMatch] = []
    for match in found:
        if all(match.end <= other.start or match.start >= other.end for other in kept):
            kept.append(match)
    return sorted(kept, key=lambda m: m.start)


def redact(text: str, matches: Sequence[PiiMatch] | None = None) -> str:
    """Replace every match (found here when not given) with its kind's placeholder."""
    if matches is None:
        matches = find_pii(text)
    for match in sorted(matches, key=lambda m: m.start, reverse=True):
        text = text[: match.start] + PLACEHOLDERS[match.kind] + text[match.end :]
    return text


class PiiGate:
    """Quarantine (reason `pii_<kind>`) or redact (reason `pii_redacted`) examples with PII."""

    name = "pii"

    def __init__(
        self,
        *,
        action: Literal["quarantine", "redact"] = "quarantine",
        kinds: Collection[str] = PII_KINDS,
        fields: Literal["all", "prompt", "target"] = "all",
    ) -> None:
        problems = [f"unknown kind {kind!r}" for kind in kinds if kind not in PII_KINDS]
        if action not in ("quarantine", "redact"):
            problems.append(f"action {action!r} is not 'quarantine' or 'redact'")
        if fields not in ("all", "prompt", "target"):
            problems.append(f"fields {fields!r} is not 'all', 'prompt' or 'target'")
        if problems:
            known = ", ".join(PII_KINDS)
            raise ConfigError(f"pii gate: {'; '.join(problems)} (kinds: {known})")
        self.action = action
        self.kinds = tuple(kind for kind in PII_KINDS if kind in kinds)
        self.fields = fields

    def features(self, batch: Sequence[Example]) -> list[list[tuple[str, str, list[PiiMatch]]]]:
        """Per example: (location, text, matches) for every scanned field that holds PII."""
        found = []
        for example in batch:
            scanned = ((at, text, find_pii(text, self.kinds)) for at, text in self._texts(example))
            found.append([(at, text, matches) for at, text, matches in scanned if matches])
        return found

    def check(self, examples: Sequence[Example]) -> GateOutcome:
        return self.decide(examples, self.features(examples))

    def decide(
        self, examples: Sequence[Example], features: Sequence[list[tuple[str, str, list[PiiMatch]]]]
    ) -> GateOutcome:
        outcome = GateOutcome(gate=self.name)
        totals: Counter[str] = Counter()
        with_pii = 0
        for example, found in zip(examples, features, strict=True):
            if not found:
                continue
            with_pii += 1
            totals.update(match.kind for _, _, matches in found for match in matches)
            detail = "; ".join(
                ", ".join(f"{n} {kind}" for kind, n in Counter(m.kind for m in ms).items()) + f" in {where}"
                for where, _, ms in found
            )
            if self.action == "quarantine":
                # one reason per kind, so that each kind's count is the examples that hold it
                first_at: dict[str, str] = {}
                for where, _, matches in found:
                    for match in matches:
                        first_at.setdefault(match.kind, where)
                for kind in self.kinds:
                    if kind in first_at:
                        outcome.flags.append(Flag(example.id, f"pii_{kind}", detail, field=first_at[kind]))
            else:
                redacted = {where: redact(text, matches) for where, text, matches in found}
                outcome.replacements[example.id] = _with_texts(example, redacted)
                outcome.flags.append(Flag(example.id, "pii_redacted", detail, field=found[0][0]))
        outcome.report = {
            "matches_by_kind": {kind: totals[kind] for kind in self.kinds},
            "examples_with_pii": with_pii,
        }
        return outcome

    def _texts(self, example: Example) -> Iterator[tuple[str, str]]:
        """(location, text) for every scanned field: `text`, `messages[i]`, tool-call arguments."""
        if example.messages is None:
            if self.fields != "target" and example.text:
                yield "text", example.text
            return
        for i, message in enumerate(example.messages):
            is_target = message.get("role") == "assistant"
            if self.fields == ("prompt" if is_target else "target"):
                continue
            if message.get("content"):
                yield f"messages[{i}]", message["content"]
            for j, call in enumerate(message.get("tool_calls") or ()):
                arguments = call.get("function", {}).get("arguments")
                if isinstance(arguments, str) and arguments:
                    yield f"messages[{i}].tool_calls[{j}]", arguments


def _with_texts(example: Example, redacted: dict[str, str]) -> Example:
    """A copy of `example` with the texts at the given locations replaced."""
    if example.messages is None:
        return replace(example, text=redacted.get("text", example.text))
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(example.messages):
        new = dict(message)
        if f"messages[{i}]" in redacted:
            new["content"] = redacted[f"messages[{i}]"]
        for j, call in enumerate(message.get("tool_calls") or ()):
            arguments = redacted.get(f"messages[{i}].tool_calls[{j}]")
            if arguments is not None:  # copy the list, the call and its function before editing
                new["tool_calls"] = calls = list(new["tool_calls"])
                calls[j] = {**call, "function": {**call["function"], "arguments": arguments}}
        messages.append(new)
    return replace(example, messages=messages)
