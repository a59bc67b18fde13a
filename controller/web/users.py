"""The operator screen's users: names, roles and memory-hard password hashes.

Passwords are hashed with scrypt from the standard library (``hashlib.scrypt``,
n=2**14, r=8, p=1: 16 MiB and ~50 ms per try), so a stolen database costs an
attacker memory as well as time per guess, and there is no native dependency to
build on a tool PC. There is no default account: the first admin is made with
``bumpline user add NAME --role admin`` on the controller host. Users are never
deleted, only disabled, so the audit log's names keep meaning someone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.models import WebUser
from controller.store import Store, StoreError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 10
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")


class Role(IntEnum):
    """Each role may do what the ones below it may."""

    OPERATOR = 1  # start, hold, resume, abort lots; acknowledge alarms
    ENGINEER = 2  # also dispositions, recipes, tool modes
    ADMIN = 3  # also users

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise StoreError(
                f"unknown role '{text}' (expected operator, engineer or admin)"
            ) from None


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: Role
    disabled: bool
    created_at: datetime
    changed_at: datetime


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        again = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                               p=int(p), maxmem=64 * 1024 * 1024, dklen=len(digest) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(again.hex().encode(), digest.encode())


# Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StoreError(f"a password needs at least {MIN_PASSWORD} characters")


class UserBook:
    """The ``web_users`` table, on the store's engine (migration 0005_users)."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def add(self, name: str, role: Role, password: str) -> UserInfo:
        if not NAME_RE.match(name):
            raise StoreError(
                f"user name '{name}': 2-32 characters, lower-case letters, digits, . _ -, "
                "starting with a letter"
            )
        check_new_password(password)
        now = datetime.now(UTC)
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            if session.get(WebUser, name) is not None:
                raise StoreError(f"user {name} already exists (disabled users keep their name)")
            row = WebUser(name=name, role=role.label, password_hash=hash_password(password),
                          disabled=False, created_at=now, changed_at=now)
            session.add(row)
        return _info(row)

    def get(self, name: str) -> UserInfo | None:
        with Session(self._engine) as session:
            row = session.get(WebUser, name)
            return _info(row) if row is not None else None

    def list(self) -> list[UserInfo]:
        with Session(self._engine) as session:
            return [_info(r) for r in session.scalars(select(WebUser).order_by(WebUser.name))]

    def set_password(self, name: str, password: str) -> UserInfo:
        check_new_password(password)
        return self._change(name, password_hash=hash_password(password))

    def set_disabled(self, name: str, disabled: bool = True) -> UserInfo:
        return self._change(name, disabled=disabled)

    def set_role(self, name: str, role: Role) -> UserInfo:
        return self._change(name, role=role.label)

    def _change(self, name: str, **values: object) -> UserInfo:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            row = session.get(WebUser, name)
            if row is None:
                raise StoreError(f"no user {name} (see 'bumpline user list')")
            for key, value in values.items():
                setattr(row, key, value)
            row.changed_at = datetime.now(UTC)
        return _info(row)

    def verify(self, name: str, password: str) -> UserInfo | None:
        """The user when the name and password match and the account is enabled."""
        with Session(self._engine) as session:
            row = session.get(WebUser, name)
            stored = row.password_hash if row is not None else _DUMMY_HASH
            ok = check_password(password, stored)
            if row is None or not ok or row.disabled:
                return None
            return _info(row)


def _info(row: WebUser) -> UserInfo:
    return UserInfo(row.name, Role.parse(row.role), row.disabled, row.created_at, row.changed_at)
