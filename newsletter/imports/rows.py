"""Checking a row: its address (fast for plain ones) and name, or why it cannot be used."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError
from email_validator import validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from newsletter.addresses import MAX_ADDRESS_LENGTH
from newsletter.addresses import MAX_NAME_LENGTH
from newsletter.addresses import Address
from newsletter.addresses import InvalidAddress
from newsletter.addresses import InvalidName
from newsletter.addresses import clean_name
from newsletter.addresses import key_of
from newsletter.addresses import normalize_address
from newsletter.subscribers import FORMULA_STARTS

_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_LOCAL = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*\\Z")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# email-validator lowercases these local parts (RFC 2142): left to the full check.
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@lru_cache(maxsize=8192)
def _domain(domain: str) -> tuple[str, str] | None:
    """The normalized and ASCII forms of a valid domain, or None (once per domain)."""
    try:
        info = validate_email(
            f"x@{domain}",
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except EmailNotValidError:
        return None
    return info.domain, info.ascii_domain


def fast_address(candidate: str) -> Address | None:
    """normalize_address for plain ASCII local parts, validating each domain only once.

    Returns exactly what normalize_address returns, or None when the address needs the
    full check (anything unusual, and every invalid address, so its message is the same).
    Imports spend most of their time here: a million rows share a few thousand domains.
    """
    local, at, domain = candidate.rpartition("@")
    if (
        not at
        or len(candidate) > MAX_ADDRESS_LENGTH
        or _PLAIN_LOCAL.match(local) is None
        or local.lower() in _CASE_INSENSITIVE
    ):
        return None
    forms = _domain(domain)
    if forms is None:
        return None
    display = f"{local}@{forms[0]}"
    ascii_form = f"{local}@{forms[1]}"
    if len(display) > MAX_ADDRESS_LENGTH or len(ascii_form) > MAX_ADDRESS_LENGTH:
        return None
    return Address(key=key_of(ascii_form), display=display, ascii=ascii_form)


def _unescape(value: str) -> str:
    """Take off the apostrophe our export puts before cells a spreadsheet would run."""
    if value.startswith("'") and value[1:2] in FORMULA_STARTS and value[1:2]:
        return value[1:]
    return value


def _quote(value: str, limit: int = 60) -> str:
    short = value if len(value) <= limit else value[:limit] + "…"
    return json.dumps(short, ensure_ascii=False)


def check_row(
    record: list[str], email_index: int, name_index: int | None
) -> tuple[Address, str | None] | str:
    """Return the row's address and name, or the reason it cannot be imported."""
    raw = _unescape(record[email_index]) if email_index < len(record) else ""
    candidate = raw.strip()
    if not candidate:
        return "no email address"
    address = fast_address(candidate)
    if address is None:
        try:
            address = normalize_address(candidate)
        except InvalidAddress as exc:
            reason = str(exc).removeprefix("That email address is not valid: ")
            return f"email {_quote(candidate)}: {reason}"
    name = None
    if name_index is not None and name_index < len(record):
        name = _unescape(record[name_index]).strip() or None
        if name is not None and (len(name) > MAX_NAME_LENGTH or _CONTROL.search(name)):
            try:
                name = clean_name(name)
            except InvalidName as exc:
                return f"name {_quote(name or '')}: {exc}"
    return address, name


@dataclass
class Entry:
    """One address of a batch: its first row's forms, the first name given, and its rows."""

    address: Address
    name: str | None
    count: int = 1
