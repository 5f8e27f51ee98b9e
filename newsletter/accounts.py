"""Editor accounts for the web console: creation, password checks, session proofs."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

import sqlalchemy as sa
import sqlalchemy.orm as so
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError

from newsletter import clock
from newsletter.addresses import InvalidAddress
from newsletter.addresses import normalize_address
from newsletter.errors import NewsletterError
from newsletter.models import User

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


class AccountError(NewsletterError):
    """An account could not be created or changed as asked."""


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    # argon2id (memory-hard) with the library's RFC 9106 low-memory profile: 64 MiB, t=3.
    return PasswordHasher()


# Checked against when the address is unknown, so a wrong address costs the same time as a
# wrong password and the response time does not tell which accounts exist.
@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash("no such account: constant-time filler")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"The password can be at most {MAX_PASSWORD_LENGTH} characters.")


def account_key(raw_email: str) -> str:
    """Return the lookup key of an editor's address (lowercased, IDN normalized)."""
    try:
        return normalize_address(raw_email).key
    except InvalidAddress as exc:
        raise AccountError(f"{raw_email!r}: {exc}") from None


def create_user(session: so.Session, email: str, password: str) -> User:
    """Create an editor account with an argon2id password hash."""
    key = account_key(email)
    _check_password(password)
    if session.scalar(sa.select(User.id).where(User.email == key)) is not None:
        raise AccountError(f"An account for {key} exists already.")
    user = User(email=key, password_hash=_hasher().hash(password))
    session.add(user)
    session.flush()
    return user


def find_user(session: so.Session, email: str) -> User:
    """Return the account for an address, or raise AccountError."""
    key = account_key(email)
    user = session.scalar(sa.select(User).where(User.email == key))
    if user is None:
        raise AccountError(f"There is no editor account for {key}.")
    return user


def set_password(session: so.Session, user: User, password: str) -> None:
    """Change an editor's password; every session of the old one stops working."""
    _check_password(password)
    user.password_hash = _hasher().hash(password)
    session.flush()


def authenticate(session: so.Session, email: str, password: str) -> User | None:
    """Return the account when the address and password match, else None."""
    try:
        key = normalize_address(email).key
    except InvalidAddress:
        key = None
    user = None
    if key is not None and len(password) <= MAX_PASSWORD_LENGTH:
        user = session.scalar(sa.select(User).where(User.email == key))
    try:
        _hasher().verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = _hasher().hash(password)
    user.last_login_at = clock.now()
    session.flush()
    return user


def session_proof(secret_key: str, user: User) -> str:
    """Return the value a login session carries to prove it belongs to this password.

    Derived from the password hash, so changing the password ends every existing session.
    """
    message = f"{user.id}:{user.password_hash}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()[:32]


def user_for_session(
    session: so.Session, secret_key: str, user_id: object, proof: object
) -> User | None:
    """Return the account a login session names, if its proof still holds."""
    if not isinstance(user_id, int) or not isinstance(proof, str):
        return None
    user = session.get(User, user_id)
    if user is None or not hmac.compare_digest(session_proof(secret_key, user), proof):
        return None
    return user


def all_users(session: so.Session) -> list[User]:
    """Return every editor account, by address."""
    return list(session.scalars(sa.select(User).order_by(User.email)))
