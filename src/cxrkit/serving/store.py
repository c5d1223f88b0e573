"""The case store: every analysis the server makes, in SQLite (default) or PostgreSQL (SQLAlchemy 2.x).

Tables: ``analyses`` (id (uuid), time, kind (predict / explain), model name + version + sha256, the
input's SHA-256, patient ID and study date when known, the API key that made it, the outputs as JSON);
``idempotency`` (the first response to each Idempotency-Key, stored with its analysis in one
transaction); ``api_keys`` and ``audit`` (``cxrkit.serving.keys``). Tables are created on start-up. The default database is ``$CXRKIT_HOME/cases.db``; pass
``postgresql+psycopg://user:pass@host/db`` for PostgreSQL: the same code path.
"""

from __future__ import annotations

import datetime as _dt
import logging
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Date, DateTime, Index, Integer, String, create_engine, delete, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from cxrkit.core.errors import ConfigError
from cxrkit.core.settings import cxrkit_home, private_file

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class Analysis(Base):
    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    model_name: Mapped[str] = mapped_column(String(200), nullable=False)
    model_version: Mapped[str] = mapped_column(String(64), nullable=False)
    model_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    input_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    patient_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    study_date: Mapped[_dt.date | None] = mapped_column(Date, nullable=True)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the API key that made it

    __table_args__ = (Index("ix_analyses_patient", "patient_id", "study_date", "created_at"),)

    def to_dict(self) -> dict[str, Any]:
        created = self.created_at
        if created.tzinfo is None:  # SQLite drops the zone; every time stored is UTC
            created = created.replace(tzinfo=_dt.UTC)
        return {
            "analysis_id": self.id,
            "created_at": created.isoformat(),
            "kind": self.kind,
            "model": {"name": self.model_name, "version": self.model_version, "sha256": self.model_sha256},
            "input_sha256": self.input_sha256,
            "patient_id": self.patient_id,
            "study_date": self.study_date.isoformat() if self.study_date else None,
            "outputs": self.outputs,
            "key_id": self.key_id,
        }


class IdempotentResponse(Base):
    """The first response to an Idempotency-Key (per API key), saved in the same transaction as its analysis."""

    __tablename__ = "idempotency"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    principal: Mapped[str] = mapped_column(String(32), primary_key=True)  # key id, "" without API keys
    request_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    analysis_id: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)

    __table_args__ = (Index("ix_idempotency_created", "created_at"),)


IDEMPOTENCY_TTL = _dt.timedelta(hours=24)  # how long a retry finds its first response


class ApiKey(Base):
    """An API key: its public id, name, scope and scrypt hash (the secret itself is never stored)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    salt: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[_dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEntry(Base):
    """Who read or wrote what, when: one row per authenticated-or-refused /v1 request."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[_dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    action: Mapped[str] = mapped_column(String(16), nullable=False)  # read / write / admin / denied
    method: Mapped[str] = mapped_column(String(8), nullable=False)
    path: Mapped[str] = mapped_column(String(300), nullable=False)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    analysis_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    client: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (Index("ix_audit_at", "at"),)

    def to_dict(self) -> dict[str, Any]:
        at = self.at if self.at.tzinfo else self.at.replace(tzinfo=_dt.UTC)
        return {
            "at": at.isoformat(),
            "key_id": self.key_id,
            "action": self.action,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "analysis_id": self.analysis_id,
            "client": self.client,
        }


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a different request."""


def default_db_url() -> str:
    return f"sqlite:///{cxrkit_home() / 'cases.db'}"


def redact_url(url: str) -> str:
    """The URL with its password hidden (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


class CaseStore:
    """Records analyses and reads them back (thread-safe: one short session per call)."""

    def __init__(self, url: str | None = None):
        self.url = url or default_db_url()
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise ConfigError(
                f"--db {self.url!r} is not a database URL. Use e.g. sqlite:///path/cases.db or "
                "postgresql+psycopg://user:password@127.0.0.1:5432/cxrkit."
            ) from None
        self.backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.backend == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if parsed.database and parsed.database != ":memory:":
                db = Path(parsed.database).expanduser()
                db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                private_file(db)  # the store holds patient IDs: owner-only (its -wal/-shm follow its mode)
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except (ArgumentError, ImportError) as err:
            raise ConfigError(
                f"Cannot use case store {redact_url(self.url)}: {err}. For PostgreSQL install psycopg "
                "(`pip install 'psycopg[binary]'`) and use postgresql+psycopg://..."
            ) from None
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            Base.metadata.create_all(self.engine)
            self._migrate()
        except SQLAlchemyError as err:
            raise ConfigError(
                f"Cannot open the case store at {redact_url(self.url)}: {str(err).splitlines()[0][:300]}. "
                "Fix: check --db (server running, database exists, credentials) or leave it out for SQLite "
                "under CXRKIT_HOME."
            ) from None

    def _migrate(self) -> None:
        """Add the columns newer versions need to a store made by an older one."""
        from sqlalchemy import inspect, text

        cols = {c["name"] for c in inspect(self.engine).get_columns("analyses")}
        if "key_id" not in cols:
            with self.engine.begin() as c:
                c.execute(text("ALTER TABLE analyses ADD COLUMN key_id VARCHAR(32)"))

    def record(self, **analysis: Any) -> dict[str, Any]:
        """Store one analysis (the fields of ``_row``); returns it as ``Analysis.to_dict``."""
        row = self._row(**analysis)
        with self._sessions.begin() as s:
            s.add(row)
        return row.to_dict()

    def replay(self, key: str, principal: str, request_sha256: str) -> dict[str, Any] | None:
        """The saved response to Idempotency-Key ``key`` (of this API key), or None if it is new.

        Raises:
            IdempotencyConflict: the key was used for a different request.
        """
        with Session(self.engine) as s:
            row = s.get(IdempotentResponse, (key, principal))
            if row is None:
                return None
            if row.request_sha256 != request_sha256:
                raise IdempotencyConflict(key)
            return row.response

    def record_once(
        self,
        key: str,
        principal: str,
        request_sha256: str,
        respond: Any,
        **analysis: Any,
    ) -> tuple[dict[str, Any], bool]:
        """Store an analysis and its response (``respond(record) -> dict``) under Idempotency-Key ``key``
        in one transaction: a retried request never makes a second record. Keys older than
        ``IDEMPOTENCY_TTL`` (24 h) are forgotten.

        Returns (response, replayed): replayed is True when a concurrent request with the same key
        committed first (its response is returned and this analysis is not stored).
        """
        row = self._row(**analysis)
        rec = row.to_dict()
        response = respond(rec)
        saved = IdempotentResponse(
            key=key,
            principal=principal,
            request_sha256=request_sha256,
            analysis_id=row.id,
            created_at=row.created_at,
            response=response,
        )
        try:
            with self._sessions.begin() as s:
                s.execute(
                    delete(IdempotentResponse).where(IdempotentResponse.created_at < row.created_at - IDEMPOTENCY_TTL)
                )
                s.add(row)
                s.flush()
                s.add(saved)
        except IntegrityError:
            first = self.replay(key, principal, request_sha256)  # a concurrent duplicate committed first
            if first is None:  # pragma: no cover - the row that conflicted is gone
                raise
            return first, True
        return response, False

    def _row(
        self,
        *,
        kind: str,
        model: dict[str, Any],
        input_sha256: str,
        outputs: dict[str, Any],
        patient_id: str | None = None,
        study_date: str | None = None,
        key_id: str | None = None,
    ) -> Analysis:
        return Analysis(
            id=str(uuid.uuid4()),
            created_at=_dt.datetime.now(_dt.UTC),
            kind=kind,
            model_name=str(model["name"]),
            model_version=str(model.get("version") or ""),
            model_sha256=str(model["sha256"]),
            input_sha256=input_sha256,
            patient_id=patient_id,
            study_date=_dt.date.fromisoformat(study_date) if study_date else None,
            outputs=outputs,
            key_id=key_id,
        )

    def get(self, analysis_id: str) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            row = s.get(Analysis, analysis_id)
            return row.to_dict() if row else None

    def patient_analyses(self, patient_id: str, model_name: str | None = None) -> list[dict[str, Any]]:
        """The patient's analyses ordered by study date (unknown last), then time."""
        stmt = select(Analysis).where(Analysis.patient_id == patient_id)
        if model_name:
            stmt = stmt.where(Analysis.model_name == model_name)
        stmt = stmt.order_by(Analysis.study_date.is_(None), Analysis.study_date, Analysis.created_at)
        with Session(self.engine) as s:
            return [r.to_dict() for r in s.scalars(stmt)]

    def count(self) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(Analysis)) or 0)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as c:
                c.execute(select(1))
            return True
        except SQLAlchemyError:
            return False

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": redact_url(self.url)}

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
