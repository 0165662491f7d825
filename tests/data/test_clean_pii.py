"""PII masking (llmfs/data/clean/pii.py): a table of positive and negative cases per type; masked text never
contains the original value."""

from __future__ import annotations

import pytest

from llmfs.data.clean.config import PII_TYPES, PiiType
from llmfs.data.clean.pii import PATTERNS, mask

# (text, type, value that must be masked) -- positives
POSITIVE = [
    ("write to jane.doe+news@example.co.uk today", "email", "jane.doe+news@example.co.uk"),
    ("<a href='mailto:bob@example.org'>", "email", "bob@example.org"),
    ("https://x.org/share?to=ann@mail.example.com&s=1", "email", "ann@mail.example.com"),
    ("call (555) 123-4567 now", "phone", "(555) 123-4567"),
    ("or 555.123.4567.", "phone", "555.123.4567"),
    ("tel +1 415 555 2671", "phone", "+1 415 555 2671"),
    ("London +44 20 7946 0958", "phone", "+44 20 7946 0958"),
    ("server 192.168.0.1:8080 is down", "ipv4", "192.168.0.1"),
    ("ping 8.8.8.8", "ipv4", "8.8.8.8"),
    ("it came from 10.0.0.42.", "ipv4", "10.0.0.42"),
    ("host 2001:db8::8a2e:370:7334 up", "ipv6", "2001:db8::8a2e:370:7334"),
    ("link-local fe80::1ff:fe23:4567:890a", "ipv6", "fe80::1ff:fe23:4567:890a"),
    ("visa 4111 1111 1111 1111 exp", "credit_card", "4111 1111 1111 1111"),
    ("mc 5500-0000-0000-0004", "credit_card", "5500-0000-0000-0004"),
    ("amex 378282246310005.", "credit_card", "378282246310005"),
    ("aws AKIAIOSFODNN7EXAMPLE key", "secret", "AKIAIOSFODNN7EXAMPLE"),
    ("token ghp_" + "a1B2" * 9, "secret", "ghp_" + "a1B2" * 9),
    ("OPENAI sk-proj1234567890abcdefghij", "secret", "sk-proj1234567890abcdefghij"),
    ('api_key = "abcdEFGH1234ijklMNOP"', "secret", "abcdEFGH1234ijklMNOP"),
    ("password: hunter2hunter2", "secret", "hunter2hunter2"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "private_key",
     "MIIEpAIBAAKCAQEA"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----", "private_key",
     "b3BlbnNzaC1rZXk"),
]

# texts that hold no PII of any type (and must come back unchanged)
NEGATIVE = [
    "see https://medium.com/@jane/post and @handle",   # a path with @, a social handle
    "retina logo@2x.png",                               # a file name, not an address
    "user@localhost",                                   # no domain
    "card 4111 1111 1111 1112",                         # fails Luhn
    "order 1234567890123",                              # 13 digits, fails Luhn
    "date 2021-03-14, years 1990-2000",
    "release v1.2.3.4 and version 1.2.3",               # version strings
    "octets 256.1.1.1 and 1.2.3.4.5 and 01.2.3.4",      # invalid / five parts / leading zero
    "at 12:30:45 we used std::vector",                  # a time, a C++ scope
    "pi is 3.14159 and 42 and 5551234567",              # numbers without separators
    "the password field is required",                   # the word alone
    "sha 4f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39",     # a git hash
]


def test_pattern_order_matches_config():
    assert tuple(PATTERNS) == PII_TYPES and PiiType.__args__ == PII_TYPES


@pytest.mark.parametrize("text,kind,value", POSITIVE, ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(POSITIVE)])
def test_positive(text, kind, value):
    masked, counts = mask(text, PII_TYPES)
    assert counts == {kind: 1}, masked
    assert f"<|{kind}|>" in masked and value not in masked


@pytest.mark.parametrize("text", NEGATIVE)
def test_negative(text):
    assert mask(text, PII_TYPES) == (text, {})


def test_only_chosen_types_and_originals_never_survive():
    text = " ".join(t for t, _, _ in POSITIVE)
    masked, counts = mask(text, PII_TYPES)
    assert sum(counts.values()) == len(POSITIVE)
    assert all(value not in masked for _, _, value in POSITIVE)
    only_email, counts = mask(text, ("email",))
    assert set(counts) == {"email"} and "192.168.0.1" in only_email
    assert mask("a@b.co a@b.co", ("email",)) == ("<|email|> <|email|>", {"email": 2})
