"""API keys with scopes, stored hashed, an audit trail, and a limit on failed attempts.

A key is ``cxr_<id>_<secret>``; the store keeps its id, name, scope (read < write < admin) and an
scrypt hash of the secret, never the secret. ``CXRKIT_API_KEY`` (``cxr serve --api-key``) stays an
admin key. Without any key the server is open (meant for localhost); with one, every /v1 route needs a
key whose scope covers it: reading (GET, /v1/similar) needs ``read``, recording analyses ``write``,
the audit trail ``admin``. A client with ``max_failures`` bad keys within ``window_s`` gets 429.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cxrkit.core.errors import ConfigError
from cxrkit.serving.errors import Unauthorized, Unavailable
from cxrkit.serving.store import ApiKey, AuditEntry, CaseStore

SCOPES = ("read", "write", "admin")
RANK = {s: i for i, s in enumerate(SCOPES)}
ENV_KEY_ID = "env-admin"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()


@dataclass
class Caller:
    """Who makes a request: the key id (None on an open server), its scope, what the request did."""

    key_id: str | None
    scope: str
    action: str = "read"
    analysis_id: str | None = None

    @property
    def principal(self) -> str:
        return self.key_id or ""


class KeyRing:
    """The API keys of a case store, the environment's admin key and the failed-attempt limiter."""

    def __init__(self, store: CaseStore, env_key: str | None = None, max_failures: int = 10, window_s: float = 300):
        self.store = store
        self.env_key = env_key or None
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._verified: LRUCache[str, str] = LRUCache(maxsize=1024)  # sha256(token) -> key id: skips scrypt
        self._lock = threading.Lock()
        self._required: tuple[float, bool] = (0.0, False)

    # -- managing keys (cxr keys ...) --
    def create(self, name: str, scope: str) -> tuple[str, dict[str, Any]]:
        """A new key: returns (the token, shown once, and its description)."""
        if scope not in RANK:
            raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}.")
        key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
        row = ApiKey(
            id=key_id,
            name=name[:100] or key_id,
            scope=scope,
            salt=salt.hex(),
            hash=_hash(secret, salt),
            created_at=_dt.datetime.now(_dt.UTC),
        )
        with self.store._sessions.begin() as s:
            s.add(row)
        self._required = (0.0, True)
        return f"cxr_{key_id}_{secret}", self._describe(row)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key (effective on the server's next request); False if no such active key."""
        with self.store._sessions.begin() as s:
            res = s.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=_dt.datetime.now(_dt.UTC))
            )
        return bool(res.rowcount)

    def list(self) -> list[dict[str, Any]]:
        with Session(self.store.engine) as s:
            return [self._describe(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    @staticmethod
    def _describe(row: ApiKey) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "scope": row.scope,
            "created_at": (
                row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=_dt.UTC)
            ).isoformat(),
            "revoked": row.revoked_at is not None,
        }

    # -- checking requests --
    def required(self) -> bool:
        """True when the environment key is set or the store holds an active key (re-read every 5 s)."""
        if self.env_key:
            return True
        at, value = self._required
        if time.monotonic() - at < 5:
            return value
        with Session(self.store.engine) as s:
            value = s.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None
        self._required = (time.monotonic(), value)
        return value

    def _locked_out(self, client: str) -> float:
        with self._lock:
            q = self._failures.get(client)
            now = time.monotonic()
            while q and now - q[0] > self.window_s:
                q.popleft()
            if q and len(q) >= self.max_failures:
                return self.window_s - (now - q[0])
            return 0.0

    def _fail(self, client: str, message: str) -> Unauthorized:
        with self._lock:
            self._failures.setdefault(client, deque()).append(time.monotonic())
            if len(self._failures) > 10_000:  # bounded memory under a spray of client addresses
                self._failures.pop(next(iter(self._failures)))
        return Unauthorized(message)

    def authenticate(self, token: str | None, client: str) -> Caller:
        """The caller a presented key stands for.

        Raises:
            Unavailable: 429 after too many failures from this client.
            Unauthorized: 401 for a missing, unknown or revoked key.
        """
        wait = self._locked_out(client)
        if wait > 0:
            raise Unavailable(
                "too_many_failures",
                f"Too many failed API-key attempts from this client; retry in {int(wait) + 1} s.",
                int(wait) + 1,
                status=429,
            )
        hint = "A valid API key is required: send it in the X-API-Key header (or Authorization: Bearer)."
        if not token:
            raise self._fail(client, hint)
        if self.env_key and hmac.compare_digest(token.encode(), self.env_key.encode()):
            return Caller(ENV_KEY_ID, "admin")
        parts = token.split("_", 2)  # the secret itself may hold "_"
        if len(parts) != 3 or parts[0] != "cxr" or len(parts[1]) > 32:
            raise self._fail(client, hint)
        key_id, secret = parts[1], parts[2]
        with Session(self.store.engine) as s:
            row = s.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            raise self._fail(client, "This API key is unknown or revoked. " + hint)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            known = self._verified.get(digest) == key_id
        if not known:
            if not hmac.compare_digest(_hash(secret, bytes.fromhex(row.salt)), row.hash):
                raise self._fail(client, "This API key is unknown or revoked. " + hint)
            with self._lock:
                self._verified[digest] = key_id
        return Caller(row.id, row.scope)

    # -- the audit trail --
    def audit(self, caller: Caller | None, method: str, path: str, status: int, client: str | None) -> None:
        entry = AuditEntry(
            at=_dt.datetime.now(_dt.UTC),
            key_id=caller.key_id if caller else None,
            action=caller.action if caller and status < 400 else ("denied" if status in (401, 403, 429) else "error"),
            method=method[:8],
            path=path[:300],
            status=status,
            analysis_id=caller.analysis_id if caller else None,
            client=(client or "")[:64] or None,
        )
        with self.store._sessions.begin() as s:
            s.add(entry)

    def audit_entries(self, limit: int = 100, key_id: str | None = None) -> list[dict[str, Any]]:
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if key_id:
            stmt = stmt.where(AuditEntry.key_id == key_id)
        with Session(self.store.engine) as s:
            return [r.to_dict() for r in s.scalars(stmt)]
