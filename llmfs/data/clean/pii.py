"""PII masking: regular expressions plus validation, each match replaced by a typed placeholder `<|type|>`.

`PATTERNS` is applied in its order (a value masked by an earlier type is no longer seen by later ones):
- private_key: PEM private-key blocks, BEGIN to END line (RSA, EC, OPENSSH, ENCRYPTED, ...);
- secret: tokens with a known vendor format (AWS access key ids, GitHub, Slack, Stripe, OpenAI-style `sk-`,
  Google API keys, JSON Web Tokens) and the value in `api_key = ...`, `secret: ...`, `password=...` assignments
  (16+ characters for a key / token, 8+ for a password); the name is kept, the value masked;
- email: local@domain.tld, the TLD alphabetic and not an image extension (`logo@2x.png` is a file name); an
  address inside a URL (`mailto:a@b.org`, `https://x.org/?to=a@b.org`) is masked, a path like `/@user` is not;
- credit_card: 13-19 digits, optionally grouped by single spaces or dashes, that pass the Luhn check;
- ipv6: a candidate of hex groups and colons (two non-empty groups at least) that `ipaddress.IPv6Address`
  accepts; so "12:30:45" or "std::vector" stay;
- ipv4: four dot-separated decimals that `ipaddress.IPv4Address` accepts (each octet 0-255, no leading zeros),
  not glued to a letter or digit on either side, nor to a dot before it or a ".digit" after it (a full stop
  after it is fine). So version strings stay: "v1.2.3.4" (a letter before it),
  "1.2.3" (three parts), "1.2.3.4.5" (a fifth part); a bare "1.2.3.4" after the word "version" *is* masked;
- phone: North American (`(555) 123-4567`, `555-123-4567`, `+1 555 123 4567`) and international numbers
  starting with `+` (`+44 20 7946 0958`), 10-15 digits in all, groups separated by a space, dot or dash. Plain
  digit runs without separators (order numbers, timestamps) are not phone numbers here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence

_KEY_NAMES = r"(?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|secret[_-]?key|client[_-]?secret|secret|token)"


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(m: re.Match) -> bool:
    digits = re.sub(r"[ -]", "", m.group(0))
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _ipv4_ok(m: re.Match) -> bool:
    try:
        ipaddress.IPv4Address(m.group(0))
    except ValueError:
        return False
    return True


def _ipv6_ok(m: re.Match) -> bool:
    text = m.group(0)
    if sum(1 for g in text.split(":") if g) < 2:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _phone_ok(m: re.Match) -> bool:
    return 10 <= sum(c.isdigit() for c in m.group(0)) <= 15


def _always(m: re.Match) -> bool:
    return True


# type -> (pattern, check, mask only the matched group (1) or the whole match (0)); order: the module docstring.
PATTERNS: dict[str, tuple[re.Pattern, Callable[[re.Match], bool], int]] = {
    "private_key": (re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE "
                               r"KEY-----", re.S), _always, 0),
    "secret": (re.compile(
        r"(?<![\w-])(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{20,}"
        r"|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})(?![\w-])"
        rf"|(?i:\b{_KEY_NAMES}\b[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9_\-/+=.]{{16,}})"
        r"|(?i:\b(?:password|passwd|pwd)\b[\"']?\s*[:=]\s*[\"']?)([^\s\"']{8,})"), _always, 1),
    "email": (re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                         r"(?!(?:png|jpe?g|gif|svg|webp|bmp|ico)\b)[A-Za-z]{2,24}(?![\w-])"), _always, 0),
    "credit_card": (re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w-]|\.\d)"), _card_ok, 0),
    "ipv6": (re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
                        r"(?![\w:.])"), _ipv6_ok, 0),
    "ipv4": (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)"), _ipv4_ok, 0),
    "phone": (re.compile(r"(?<![\w+.-])(?:(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
                         r"|\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5})(?![\w-]|\.\d)"), _phone_ok, 0),
}


# A cheap test that a text may hold a type at all (a substring or one regex search), to skip the full pattern.
_DIGIT = re.compile(r"\d")
# Lower-cased literals, one of which every "secret" match contains (the vendor prefixes, the assignment names).
_SECRET_MARKERS = ("akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "_live_", "_test_", "sk-",
                   "aiza", "eyj", "key", "token", "secret", "pass", "pwd")
MAY_HOLD: dict[str, Callable[[str], bool]] = {
    "private_key": lambda t: "PRIVATE KEY-----" in t,
    "secret": lambda t: any(m in t.lower() for m in _SECRET_MARKERS),
    "email": lambda t: "@" in t,
    "credit_card": lambda t: _DIGIT.search(t) is not None,
    "ipv6": lambda t: ":" in t,
    "ipv4": lambda t: "." in t and _DIGIT.search(t) is not None,
    "phone": lambda t: _DIGIT.search(t) is not None,
}


def placeholder(kind: str) -> str:
    return f"<|{kind}|>"


def mask(text: str, types: Sequence[str]) -> tuple[str, dict[str, int]]:
    """`text` with every match of the chosen types replaced by its placeholder, and the count per type."""
    counts: dict[str, int] = {}
    for kind, (pattern, ok, group) in PATTERNS.items():
        if kind not in types or not MAY_HOLD[kind](text):
            continue
        n = 0

        def replace(m: re.Match) -> str:
            nonlocal n
            if not ok(m):
                return m.group(0)
            n += 1
            g = (m.lastindex or 0) if group else 0  # the one group that matched: the value of an assignment
            if g == 0:
                return placeholder(kind)
            start, end = m.span(g)
            return m.group(0)[:start - m.start()] + placeholder(kind) + m.group(0)[end - m.start():]

        text = pattern.sub(replace, text)
        if n:
            counts[kind] = n
    return text, counts
