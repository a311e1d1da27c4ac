"""Who may read what in a served city: accounts, roles, per-layer read rights, tokens, sessions.

A city's access rules live beside it, in ``CITY/.cim/access.sqlite`` (a folder the server never
serves: no path segment starting with a dot is). A city with no such file, or with accounts but
no restricted layer, is readable by anyone, as before; the rules are:

- **Layers** are public unless restricted to named roles (:meth:`AccessControl.restrict`).
- **Users** have one role. The ``admin`` role reads every layer.
- **Anonymous** readers (no token, no session) read the public layers, unless the city turns
  anonymous reading off (:meth:`AccessControl.set_anonymous`).
- **Passwords** (for the viewer's login) are hashed with Argon2id (``argon2-cffi``, the
  reference implementation's binding): memory-hard, salted, parameters stored in the hash.
- **API tokens** (for scripts) are 256 random bits shown once; only a salted SHA-256 of the
  secret is stored. A token has too much entropy for guessing to matter, so a fast hash is the
  right one here (a memory-hard hash per request would cost the tile server dearly).
- **Sessions** are a signed cookie (HMAC-SHA256 with the city's secret key): user, expiry and the
  user's session epoch, which :meth:`AccessControl.revoke` and a password change advance, so a
  revoked user's cookies stop working at once. Any number of server processes can check them.

Example
-------
>>> from cim.access import AccessControl                                     # doctest: +SKIP
>>> acl = AccessControl.open("tiles/tianshui", create=True)
>>> acl.add_user("wang", role="planner", password="a long passphrase")
>>> token = acl.new_token("wang")            # shown once: "cim_…"
>>> acl.restrict("bim", roles=["planner"])
>>> acl.authenticate_token(token).can_read("bim")
True
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cim.errors import CimError, CimInputError, CimNotFound

__all__ = [
    "ACCESS_DIR",
    "ADMIN",
    "ANONYMOUS",
    "AccessControl",
    "Principal",
    "UserInfo",
    "file_stamp",
    "private_dir",
    "secret_key",
]

#: per running event loop, the stamps taken in its current turn
_STAMPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[int, int] | None]] = weakref.WeakKeyDictionary()


def file_stamp(path: str | Path) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, None when it is missing: at most one ``stat`` a file per
    turn of the running event loop.

    The server asks whether the access rules and ``city.json`` changed on every request; a
    ``stat`` each, three a request, cost a third of a cached tile's answer (see
    ``benchmarks/bench_fastpath.py``). Within one turn of the loop the answer is taken once and
    a callback clears it at the next turn, so a change (a ``cim users revoke``) reaches every
    request handled after it by one turn of the loop at most: microseconds while the server is
    busy, since a pending callback keeps the loop from sleeping. Outside a running loop (a
    thread, the CLI) every call is a ``stat``.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    key = os.fspath(path)
    memo = _STAMPS.get(loop) if loop is not None else None
    if memo is not None and key in memo:
        return memo[key]
    try:
        st = os.stat(key)
        stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        stamp = None  # any other error is raised, never taken for "no file" (no rules: all public)
    if loop is not None:
        if memo is None:
            memo = _STAMPS[loop] = {}
            loop.call_soon(_STAMPS.pop, loop, None)  # the next turn starts afresh
        memo[key] = stamp
    return stamp


#: the folder, inside a built city, that holds its access rules, audit log and secret key
ACCESS_DIR = ".cim"
DB_NAME = "access.sqlite"
KEY_NAME = "secret.key"
#: the role that reads every layer
ADMIN = "admin"
SESSION_SECONDS = 12 * 3600
_NAME = re.compile(r"^[A-Za-z0-9_.@\-\u4e00-\u9fff]{1,64}$")
_TOKEN = re.compile(r"^cim_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT,
    active INTEGER NOT NULL DEFAULT 1, epoch INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name),
    salt BLOB NOT NULL, digest BLOB NOT NULL, label TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS layer_roles (layer TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (layer, role));
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Principal:
    """Who a request is: a user and their role, or the anonymous reader (``name`` None)."""

    name: str | None
    role: str | None
    #: layer id -> roles that may read it (only the restricted layers are listed)
    restricted: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def anonymous(self) -> bool:
        return self.name is None

    @property
    def label(self) -> str:
        """The name the audit log records."""
        return self.name or "anonymous"

    def can_read(self, layer: str) -> bool:
        """Whether this principal may read ``layer`` (a public layer: always)."""
        roles = self.restricted.get(layer)
        if roles is None:
            return True
        return self.role == ADMIN or (self.role is not None and self.role in roles)

    @property
    def reads_everything(self) -> bool:
        return all(self.can_read(layer) for layer in self.restricted)


#: the reader of a city without accounts
ANONYMOUS = Principal(None, None)


@dataclass(frozen=True)
class UserInfo:
    """A row of ``cim users list``."""

    name: str
    role: str
    active: bool
    has_password: bool
    tokens: int
    created: float


def private_dir(city_dir: str | Path) -> Path:
    """``CITY/.cim``: where a city's access rules, audit log and secret key are kept."""
    return Path(city_dir) / ACCESS_DIR


def secret_key(city_dir: str | Path, *, create: bool = True) -> bytes:
    """The city's 32-byte secret (session cookies, audit MACs), made on first use (mode 0600).

    Raises
    ------
    CimNotFound
        No key yet and ``create`` is false.
    CimError
        The key file exists but is not a key.
    """
    folder = private_dir(city_dir)
    path = folder / KEY_NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise CimNotFound(f"{path}: no secret key (nothing was ever served or audited from this city)") from None
        _make_private(folder)
        fresh = secrets.token_bytes(32)
        tmp = folder / f".{KEY_NAME}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(fresh)
            f.flush()
            os.fsync(f.fileno())
        try:  # two processes racing: the first link wins and both use it
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        key = path.read_bytes()
    if len(key) != 32:
        raise CimError(f"{path}: not a cim secret key ({len(key)} bytes, expected 32)")
    return key


def _make_private(folder: Path) -> None:
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise CimError(f"cannot create {folder}: {exc.strerror or exc}") from exc


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CimInputError(f"{kind} name {name!r}: use 1-64 letters, digits, Chinese characters, or . _ - @")
    return name


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("ascii")).digest()


class AccessControl:
    """The access rules of one city (``CITY/.cim/access.sqlite``); safe to share between threads.

    Reads are cached: the rules are read again when the database file changes (its mtime), so a
    ``cim users revoke`` takes effect in a running server within a second.
    """

    def __init__(self, city_dir: str | Path, db: Path) -> None:
        self.city_dir = Path(city_dir)
        self.db = db
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._restricted: dict[str, frozenset[str]] = {}
        self._anonymous = True
        self._users: dict[str, tuple[str, bool, int]] = {}
        self._token_cache: dict[str, tuple[Principal | None, float]] = {}
        self._key: bytes | None = None
        self._hasher = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, city_dir: str | Path, *, create: bool = False) -> AccessControl:
        """The rules of the city in ``city_dir``.

        Raises
        ------
        CimNotFound
            ``city_dir`` has no rules and ``create`` is false, or is not a built city.
        """
        city = Path(city_dir)
        if not (city / "city.json").is_file():
            raise CimNotFound(f"{city}: not a built city (no city.json)")
        db = private_dir(city) / DB_NAME
        if not db.is_file():
            if not create:
                raise CimNotFound(f"{city}: no access rules yet (add a user with `cim users add`)")
            _make_private(db.parent)
        acl = cls(city, db)
        with acl._connect() as con:
            con.executescript(_SCHEMA)
        os.chmod(db, 0o600)
        return acl

    @classmethod
    def load(cls, city_dir: str | Path) -> AccessControl | None:
        """The city's rules, or None when it has none (everything is public)."""
        db = private_dir(city_dir) / DB_NAME
        return cls(Path(city_dir), db) if db.is_file() else None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db, timeout=10.0)
        con.execute("PRAGMA foreign_keys = ON")
        return con

    def _refresh(self) -> None:
        """Re-read the rules when the database changed on disk."""
        stamp = file_stamp(self.db) or (0, 0)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            restricted: dict[str, set[str]] = {}
            users: dict[str, tuple[str, bool, int]] = {}
            anonymous = True
            if stamp != (0, 0):
                con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10.0)
                try:
                    for layer, role in con.execute("SELECT layer, role FROM layer_roles"):
                        restricted.setdefault(layer, set()).add(role)
                    for name, role, active, epoch in con.execute("SELECT name, role, active, epoch FROM users"):
                        users[name] = (role, bool(active), int(epoch))
                    row = con.execute("SELECT value FROM settings WHERE key = 'anonymous'").fetchone()
                    anonymous = row is None or row[0] == "1"
                finally:
                    con.close()
            self._restricted = {k: frozenset(v) for k, v in restricted.items()}
            self._users = users
            self._anonymous = anonymous
            self._token_cache.clear()
            self._stamp = stamp

    # ------------------------------------------------------------------ rules

    @property
    def restricted(self) -> dict[str, frozenset[str]]:
        """Restricted layer id -> the roles that may read it."""
        self._refresh()
        return dict(self._restricted)

    @property
    def anonymous_allowed(self) -> bool:
        self._refresh()
        return self._anonymous

    def anonymous(self) -> Principal | None:
        """The anonymous reader, or None when this city requires a login."""
        self._refresh()
        return Principal(None, None, self._restricted) if self._anonymous else None

    def restrict(self, layer: str, roles: Iterable[str]) -> None:
        """Let only ``roles`` (and ``admin``) read ``layer``; replaces its previous roles."""
        _check_name("layer", layer)
        names = sorted({_check_name("role", r) for r in roles})
        if not names:
            raise CimInputError(f"restricting layer {layer!r} needs at least one role (admin always reads it)")
        with self._connect() as con:
            con.execute("DELETE FROM layer_roles WHERE layer = ?", (layer,))
            con.executemany("INSERT INTO layer_roles VALUES (?, ?)", [(layer, r) for r in names])
        self._stamp = None

    def make_public(self, layer: str) -> bool:
        """Lift a layer's restriction; returns whether it was restricted."""
        with self._connect() as con:
            n = con.execute("DELETE FROM layer_roles WHERE layer = ?", (layer,)).rowcount
        self._stamp = None
        return n > 0

    def set_anonymous(self, allowed: bool) -> None:
        """Whether readers without a login may read the public layers (default: yes)."""
        with self._connect() as con:
            con.execute("INSERT OR REPLACE INTO settings VALUES ('anonymous', ?)", ("1" if allowed else "0",))
        self._stamp = None

    # ------------------------------------------------------------------ users

    def _password_hasher(self):
        if self._hasher is None:
            from argon2 import PasswordHasher  # Argon2id, RFC 9106's second recommended parameters

            self._hasher = PasswordHasher()
        return self._hasher

    def add_user(self, name: str, role: str, password: str | None = None) -> None:
        """Add an account. Raises CimInputError when the name is taken or malformed."""
        _check_name("user", name)
        _check_name("role", role)
        hashed = self._password_hasher().hash(self._check_password(password)) if password is not None else None
        try:
            with self._connect() as con:
                con.execute("INSERT INTO users (name, role, password, created) VALUES (?, ?, ?, ?)", (name, role, hashed, time.time()))
        except sqlite3.IntegrityError:
            raise CimInputError(f"user {name!r} exists already") from None
        self._stamp = None

    @staticmethod
    def _check_password(password: str) -> str:
        if len(password) < 8:
            raise CimInputError("a password needs at least 8 characters")
        return password

    def set_password(self, name: str, password: str) -> None:
        """Set a user's password; their open sessions end."""
        hashed = self._password_hasher().hash(self._check_password(password))
        self._update_user(name, "UPDATE users SET password = ?, epoch = epoch + 1 WHERE name = ?", (hashed, name))

    def set_role(self, name: str, role: str) -> None:
        _check_name("role", role)
        self._update_user(name, "UPDATE users SET role = ?, epoch = epoch + 1 WHERE name = ?", (role, name))

    def revoke(self, name: str) -> int:
        """Disable a user: their tokens are deleted and their sessions end. Returns tokens deleted."""
        with self._connect() as con:
            if con.execute("UPDATE users SET active = 0, epoch = epoch + 1 WHERE name = ?", (name,)).rowcount == 0:
                raise CimNotFound(f"no user {name!r}")
            n = con.execute("DELETE FROM tokens WHERE user = ?", (name,)).rowcount
        self._stamp = None
        return n

    def _update_user(self, name: str, sql: str, args: tuple) -> None:
        with self._connect() as con:
            if con.execute(sql, args).rowcount == 0:
                raise CimNotFound(f"no user {name!r}")
        self._stamp = None

    def users(self) -> list[UserInfo]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT u.name, u.role, u.active, u.password IS NOT NULL, COUNT(t.id), u.created "
                "FROM users u LEFT JOIN tokens t ON t.user = u.name GROUP BY u.name ORDER BY u.name"
            ).fetchall()
        return [UserInfo(r[0], r[1], bool(r[2]), bool(r[3]), int(r[4]), float(r[5])) for r in rows]

    def new_token(self, name: str, label: str = "") -> str:
        """A new API token for an active user, returned once (only its salted hash is kept)."""
        with self._connect() as con:
            row = con.execute("SELECT active FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise CimNotFound(f"no user {name!r}")
            if not row[0]:
                raise CimInputError(f"user {name!r} is revoked")
            token_id = secrets.token_hex(8)
            secret = secrets.token_urlsafe(32)
            salt = secrets.token_bytes(16)
            con.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)", (token_id, name, salt, _digest(salt, secret), label, time.time()))
        self._stamp = None
        return f"cim_{token_id}_{secret}"

    # ------------------------------------------------------------------ authentication

    def _principal(self, name: str) -> Principal | None:
        user = self._users.get(name)
        if user is None or not user[1]:
            return None
        return Principal(name, user[0], self._restricted)

    def authenticate_token(self, token: str) -> Principal | None:
        """The user of a valid API token, else None. Verified tokens are cached for 30 s."""
        self._refresh()
        now = time.monotonic()
        cached = self._token_cache.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = _TOKEN.match(token or "")
        principal = None
        if found:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10.0)
            try:
                row = con.execute("SELECT user, salt, digest FROM tokens WHERE id = ?", (found.group(1),)).fetchone()
            finally:
                con.close()
            if row is not None and hmac.compare_digest(_digest(row[1], found.group(2)), row[2]):
                principal = self._principal(row[0])
        if len(self._token_cache) > 10_000:
            self._token_cache.clear()
        self._token_cache[token] = (principal, now + 30.0)
        return principal

    def authenticate_password(self, name: str, password: str) -> Principal | None:
        """The user, if ``password`` is theirs and they are active; else None (same cost either way)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        self._refresh()
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10.0)
        try:
            row = con.execute("SELECT password FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
        finally:
            con.close()
        hasher = self._password_hasher()
        stored = row[0] if row and row[0] else None
        try:
            if stored is None:  # spend the time anyway: the answer must not tell names apart
                hasher.verify(_DUMMY_HASH[0] or _dummy_hash(hasher), "not the password")
                return None
            hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        return self._principal(name)

    # ------------------------------------------------------------------ sessions

    def _session_key(self) -> bytes:
        if self._key is None:
            self._key = hmac.new(secret_key(self.city_dir), b"cim session", hashlib.sha256).digest()
        return self._key

    def session_cookie(self, principal: Principal, seconds: int = SESSION_SECONDS) -> str:
        """A signed session value for ``principal`` (a logged-in user)."""
        self._refresh()
        if principal.name is None or principal.name not in self._users:
            raise CimInputError("only a user has a session")
        epoch = self._users[principal.name][2]
        body = f"{principal.name}|{int(time.time()) + seconds}|{epoch}|{secrets.token_hex(8)}"
        mac = hmac.new(self._session_key(), body.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{body}|{mac}"

    def authenticate_session(self, value: str) -> Principal | None:
        """The user of a valid, unexpired session cookie whose epoch is current, else None."""
        self._refresh()
        parts = (value or "").split("|")
        if len(parts) != 5:
            return None
        body, mac = "|".join(parts[:4]), parts[4]
        expected = hmac.new(self._session_key(), body.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        name, expires, epoch = parts[0], parts[1], parts[2]
        user = self._users.get(name)
        if user is None or not user[1] or str(user[2]) != epoch or not expires.isdigit() or int(expires) < time.time():
            return None
        return self._principal(name)


_DUMMY_HASH: list[str | None] = [None]


def _dummy_hash(hasher) -> str:
    value = hasher.hash(secrets.token_urlsafe(16))
    _DUMMY_HASH[0] = value
    return value
