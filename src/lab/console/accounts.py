"""The console's accounts: who may sign in, with which role (issue 34, item 3).

Roles, each including the ones before it:
    viewer      sees the lab, its campaigns and the audit trail
    operator    runs, pauses, resumes and cancels campaigns, stops the lab (e-stop)
    supervisor  releases the e-stop, approves batches, manages accounts

Passwords are kept only as argon2id hashes (argon2-cffi's PasswordHasher with its own
parameters; a hash made with older parameters is replaced at the next sign-in). The accounts
live in a small SQLite file of their own (0600: not the campaign store, which the lab's group
may read). There is no default account and no default password: the first one is made on the
lab host with `lab users add NAME --role supervisor`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from lab.core.errors import LabError

ROLES = ("viewer", "operator", "supervisor")
DEFAULT_DB = "runs/console/users.db"
#: a password shorter than this is refused (NIST SP 800-63B 5.1.1.2: at least 8 characters)
MIN_PASSWORD = 10
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
_HASHER = PasswordHasher()
#: verified against when the name is unknown, so that an unknown name takes as long as a wrong password
_DUMMY = _HASHER.hash("not a password of anyone")


def may(role: str, needed: str) -> bool:
    """Whether `role` includes `needed`."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    created: float


class Accounts:
    """The accounts file: add, change, remove, verify. Each call opens the file (the console and
    `lab users` on the same host change it independently)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        fresh = not self.path.exists()
        if fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))  # 0600 before any hash is in it
        db = sqlite3.connect(self.path, timeout=10.0)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, "
                       "hash TEXT NOT NULL, created REAL NOT NULL)")
            with db:
                yield db
        finally:
            db.close()

    def list(self) -> list[Account]:
        if not self.path.exists():
            return []
        with self._db() as db:
            return [Account(*row) for row in db.execute("SELECT name, role, created FROM users ORDER BY name")]

    def get(self, name: str) -> Account | None:
        return next((a for a in self.list() if a.name == name), None)

    def add(self, name: str, role: str, password: str) -> Account:
        check_name(name)
        check_role(role)
        check_password(password)
        with self._db() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise LabError(f"account '{name}' exists already (lab users passwd / role to change it)")
            created = time.time()
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?)", (name, role, _HASHER.hash(password), created))
        return Account(name, role, created)

    def set_role(self, name: str, role: str) -> None:
        check_role(role)
        self._change(name, "UPDATE users SET role = ? WHERE name = ?", (role, name))

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        self._change(name, "UPDATE users SET hash = ? WHERE name = ?", (_HASHER.hash(password), name))

    def remove(self, name: str) -> None:
        self._change(name, "DELETE FROM users WHERE name = ?", (name,))

    def _change(self, name: str, sql: str, args: tuple) -> None:
        with self._db() as db:
            if db.execute(sql, args).rowcount == 0:
                raise LabError(f"no account '{name}'")

    def verify(self, name: str, password: str) -> Account | None:
        """The account when `password` is its password, else None (unknown names cost the same time)."""
        with self._db() as db:
            row = db.execute("SELECT name, role, created, hash FROM users WHERE name = ?", (name,)).fetchone()
            try:
                _HASHER.verify(row[3] if row else _DUMMY, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return None
            if row is None:
                return None
            if _HASHER.check_needs_rehash(row[3]):
                db.execute("UPDATE users SET hash = ? WHERE name = ?", (_HASHER.hash(password), name))
            return Account(row[0], row[1], row[2])


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise LabError(f"account name '{name}': lower-case letters, digits, '_', '.', '-', starting with a letter, "
                       "at most 32 characters")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise LabError(f"role '{role}': one of {', '.join(ROLES)}")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise LabError(f"a password needs at least {MIN_PASSWORD} characters")


def _password(ns: argparse.Namespace) -> str:
    if ns.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise LabError("the two passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    """`lab users add NAME --role ROLE | list | role NAME ROLE | passwd NAME | remove NAME`."""
    parser = argparse.ArgumentParser(prog="lab users", description="The console's accounts (on the lab host).")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"the accounts file (default {DEFAULT_DB}; the console's "
                        "users_db parameter)")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("add", help="a new account (asks for its password)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    sub.add_parser("list", help="the accounts and their roles")
    p = sub.add_parser("role", help="change an account's role")
    p.add_argument("name")
    p.add_argument("role", choices=ROLES)
    p = sub.add_parser("passwd", help="set an account's password")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true")
    p = sub.add_parser("remove", help="remove an account")
    p.add_argument("name")
    ns = parser.parse_args(argv)
    accounts = Accounts(Path(ns.db))
    try:
        if ns.verb == "add":
            accounts.add(ns.name, ns.role, _password(ns))
            print(f"lab users: {ns.name} ({ns.role}) added to {ns.db}")
        elif ns.verb == "list":
            for a in accounts.list():
                print(f"{a.name:<20} {a.role:<11} since {time.strftime('%Y-%m-%d', time.localtime(a.created))}")
            if not accounts.list():
                print(f"no accounts in {ns.db}: `lab users add NAME --role supervisor` makes the first")
        elif ns.verb == "role":
            accounts.set_role(ns.name, ns.role)
            print(f"lab users: {ns.name} is {ns.role} now (from their next sign-in)")
        elif ns.verb == "passwd":
            accounts.set_password(ns.name, _password(ns))
            print(f"lab users: {ns.name}'s password changed")
        else:
            accounts.remove(ns.name)
            print(f"lab users: {ns.name} removed")
    except LabError as exc:
        print(f"lab users: {exc}", file=sys.stderr)
        return 1
    return 0
