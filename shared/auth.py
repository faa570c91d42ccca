"""API-key authentication and scope/program authorization, free of gRPC.

A client sends ``authorization: Bearer lk_<key id>_<secret>`` metadata. The key id is
public and finds the key's record; the secret is checked against the SHA-256 hash in that
record, so the key file (or the Kubernetes Secret holding the same JSON document) never
contains a usable key. The shared gRPC interceptor calls ``Authenticator.authenticate``
then ``Authenticator.authorize`` with the scopes the servicer's ``ScopeMap`` requires, and
binds the ``Principal`` with ``use_principal`` so servicers can call ``get_principal()``.

Nothing here logs, and no exception message carries a key, a secret or a hash.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import PermissionDenied, Unauthenticated
from shared.settings import ENV_PREFIX


class Scope(enum.StrEnum):
    """What a key may do. A ``StrEnum``, so members compare and hash as plain strings."""

    ADMIN = "admin"  # everything
    POS = "pos"  # till operations: earn, redeem, refund, look up a customer
    READER = "reader"  # read-only calls
    SERVICE = "service"  # backend-to-backend calls between services of the suite


# Per-RPC requirements: "any of these scopes". ``admin`` passes every requirement, so it is
# never listed; ``ADMIN`` (empty) therefore means "admin only".
READ: Final[frozenset[str]] = frozenset({Scope.READER, Scope.POS, Scope.SERVICE})
POS: Final[frozenset[str]] = frozenset({Scope.POS, Scope.SERVICE})
SERVICE: Final[frozenset[str]] = frozenset({Scope.SERVICE})
ADMIN: Final[frozenset[str]] = frozenset()

ALL_PROGRAMS_ID: Final = "*"  # in a key record, ``programs: ["*"]`` means every program

KEY_PREFIX: Final = "lk_"
_KEY_ID_BYTES = 6  # 12 hex characters
_SECRET_BYTES = 32  # 256 bits from the OS CSPRNG, 43 url-safe base64 characters
# The upper bound keeps a hostile header from making us hash megabytes.
_KEY_PATTERN = re.compile(r"lk_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43,256})")


class KeyConfigError(ValueError):
    """An API keys document (or a key about to be added to one) is invalid.

    The message names the source and each problem (``keys[0].scopes[1]: ...``) and is
    meant for an operator; it never quotes the offending values, which may be secrets.
    """


class AllPrograms(enum.Enum):
    """Type of ``ALL_PROGRAMS``: a key that is not restricted to a list of programs."""

    ALL = ALL_PROGRAMS_ID


ALL_PROGRAMS: Final = AllPrograms.ALL


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of one RPC: which key, what it may do, in which programs."""

    key_id: str
    name: str
    scopes: frozenset[str]
    programs: frozenset[str] | AllPrograms

    def has_any_scope(self, required: Iterable[str]) -> bool:
        """True if the key holds one of ``required``; ``admin`` satisfies everything."""
        return Scope.ADMIN in self.scopes or not self.scopes.isdisjoint(required)

    def allows_program(self, program_id: str) -> bool:
        return self.programs is ALL_PROGRAMS or program_id in self.programs

    def require_program(self, program_id: str) -> None:
        """Raise ``PermissionDenied`` unless the key may act on ``program_id``.

        Applies to ``admin`` keys too: a key limited to some programs is limited, whatever
        its scopes; an operator who wants a global admin gives it all programs.
        """
        if not self.allows_program(program_id):
            raise PermissionDenied(
                "This API key may not be used for this loyalty program.",
                reason="PROGRAM_NOT_ALLOWED",
                metadata={"program_id": program_id},
            )


# ---------------------------------------------------------------------------- key file

_ProgramId = Annotated[str, Field(pattern=r"^\S{1,128}$")]


class KeyRecord(BaseModel):
    """One API key as stored: its public id and the hash of its secret, never the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    # No control characters: names end up in tables and log lines.
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)
    scopes: tuple[Scope, ...] = Field(min_length=1)
    programs: tuple[_ProgramId, ...] = Field(min_length=1)
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None = None

    @field_validator("scopes", "programs")
    @classmethod
    def _sorted_unique(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        # A canonical order keeps the file stable under edits and diffs readable.
        return tuple(sorted(set(values)))

    @field_validator("programs")
    @classmethod
    def _all_alone(cls, programs: tuple[str, ...]) -> tuple[str, ...]:
        if ALL_PROGRAMS_ID in programs and len(programs) > 1:
            raise ValueError(f"{ALL_PROGRAMS_ID!r} (all programs) cannot be mixed with ids")
        return programs

    def principal(self) -> Principal:
        programs = ALL_PROGRAMS if self.programs == (ALL_PROGRAMS_ID,) else frozenset(self.programs)
        return Principal(self.id, self.name, frozenset(self.scopes), programs)


class KeyFile(BaseModel):
    """The JSON document of a key file or of ``LOYALTY_API_KEYS``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1]
    keys: tuple[KeyRecord, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> KeyFile:
        seen: set[str] = set()
        for record in self.keys:
            if record.id in seen:
                raise ValueError(f"duplicate key id {record.id}")
            seen.add(record.id)
        return self


def _describe(exc: ValidationError) -> str:
    """``keys[0].scopes[1]: Input should be ...`` for each error, without the input."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ""
        for part in error["loc"]:
            location += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{location.lstrip('.')}: {message}" if location else message)
    return "; ".join(problems)


class KeyStore:
    """The API keys a process accepts, by key id. Immutable: changes return a new store."""

    __slots__ = ("_by_id", "_document")

    def __init__(self, records: Iterable[KeyRecord] = (), *, source: str = "API keys") -> None:
        try:
            self._document = KeyFile(version=1, keys=tuple(records))
        except ValidationError as exc:
            raise KeyConfigError(f"{source}: {_describe(exc)}") from None
        self._by_id = {record.id: record for record in self._document.keys}

    @classmethod
    def parse(cls, text: str | bytes, *, source: str = "API keys") -> KeyStore:
        """Read a JSON document; a bad one raises ``KeyConfigError`` naming each problem."""
        try:
            document = KeyFile.model_validate_json(text)
        except ValidationError as exc:
            raise KeyConfigError(f"{source}: {_describe(exc)}") from None
        return cls(document.keys, source=source)

    @classmethod
    def load(cls, path: Path) -> KeyStore:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise KeyConfigError(f"{path}: cannot read API keys: {exc.strerror}") from None
        return cls.parse(text, source=str(path))

    @classmethod
    def from_settings(
        cls, api_keys_file: Path | None, api_keys_json: SecretStr | str | None
    ) -> KeyStore:
        """The keys of ``LOYALTY_API_KEYS_FILE`` and/or ``LOYALTY_API_KEYS``.

        When both are set the keys of both are accepted; an id present in both is an error,
        so a key revoked in one place cannot stay valid through the other.
        """
        stores = []
        if api_keys_file is not None:
            stores.append(cls.load(api_keys_file))
        if api_keys_json is not None:
            text = (
                api_keys_json.get_secret_value()
                if isinstance(api_keys_json, SecretStr)
                else api_keys_json
            )
            stores.append(cls.parse(text, source=f"{ENV_PREFIX}API_KEYS"))
        if not stores:
            raise KeyConfigError(
                f"no API keys configured: set {ENV_PREFIX}API_KEYS_FILE or {ENV_PREFIX}API_KEYS"
            )
        if len(stores) == 1:
            return stores[0]
        return cls(
            (record for store in stores for record in store.records),
            source=f"{ENV_PREFIX}API_KEYS_FILE + {ENV_PREFIX}API_KEYS",
        )

    @property
    def records(self) -> tuple[KeyRecord, ...]:
        return self._document.keys

    def get(self, key_id: str) -> KeyRecord | None:
        return self._by_id.get(key_id)

    def with_key(self, record: KeyRecord) -> KeyStore:
        return KeyStore((*self.records, record))

    def with_revoked(self, key_id: str, at: datetime) -> KeyStore:
        """Mark ``key_id`` revoked at ``at`` (kept as it was if already revoked).

        Raises ``KeyError`` for an unknown id.
        """
        record = self._by_id[key_id]
        if record.revoked_at is not None:
            return self
        # Validated (unlike ``model_copy``), so a naive datetime cannot get into the file.
        revoked = KeyRecord.model_validate(record.model_dump() | {"revoked_at": at})
        return KeyStore(revoked if r.id == key_id else r for r in self.records)

    def to_json(self) -> str:
        return self._document.model_dump_json(indent=2) + "\n"


def _hash_secret(secret: str) -> str:
    # SHA-256, not bcrypt/argon2: those slow down guessing of low-entropy passwords, but a
    # secret is 256 random bits, so the hash cannot be brute-forced at any speed. A slow
    # hash would only add tens of milliseconds to every RPC.
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def generate_key(
    name: str,
    scopes: Iterable[str],
    programs: Iterable[str] = (ALL_PROGRAMS_ID,),
    *,
    now: datetime | None = None,
) -> tuple[str, KeyRecord]:
    """A new key: the clear key (show it once, then forget it) and the record to store.

    Raises ``KeyConfigError`` if the name, a scope or a program id is invalid.
    """
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    try:
        record = KeyRecord.model_validate(
            {
                "id": key_id,
                "name": name,
                "hash": _hash_secret(secret),
                "scopes": tuple(scopes),
                "programs": tuple(programs),
                "created_at": now or datetime.now(UTC).replace(microsecond=0),
            }
        )
    except ValidationError as exc:
        raise KeyConfigError(f"invalid API key: {_describe(exc)}") from None
    return f"{KEY_PREFIX}{key_id}_{secret}", record


# ---------------------------------------------------------------------- authentication


def _missing() -> Unauthenticated:
    return Unauthenticated(
        "This call needs an API key: send 'authorization: Bearer <key>'.",
        reason="MISSING_CREDENTIALS",
    )


def _malformed() -> Unauthenticated:
    return Unauthenticated(
        "The authorization metadata must be 'Bearer <key>' with one loyalty API key.",
        reason="MALFORMED_CREDENTIALS",
    )


def _bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    values = [value for key, value in metadata or () if key.lower() == "authorization"]
    if not values:
        raise _missing()
    if len(values) > 1:  # ambiguous: which one would a proxy or a log have looked at?
        raise _malformed()
    value = values[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed() from None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():  # the scheme is case-insensitive
        raise _malformed()
    return token.strip()


class Authenticator:
    """Turns request metadata into a ``Principal`` and checks its scopes.

    Every call hashes the presented secret (about a microsecond); there is no cache of
    verified keys. The store is read once, here: a process picks up new or revoked keys
    when it builds a new ``Authenticator`` (today: on restart).
    """

    def __init__(self, store: KeyStore) -> None:
        # Principals are built once, not per call; revoked keys are simply absent.
        self._active = {
            record.id: (record.hash, record.principal())
            for record in store.records
            if record.revoked_at is None
        }

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        """The caller's principal, or ``Unauthenticated`` with reason MISSING_CREDENTIALS,
        MALFORMED_CREDENTIALS or INVALID_API_KEY (unknown, wrong secret or revoked alike).
        """
        match = _KEY_PATTERN.fullmatch(_bearer_token(metadata))
        if match is None:
            raise _malformed()
        active = self._active.get(match["id"])
        # An unknown id answers slightly faster than a wrong secret; ids are public, so
        # that reveals nothing. The secret comparison itself is constant-time.
        if active is None or not hmac.compare_digest(_hash_secret(match["secret"]), active[0]):
            raise Unauthenticated(
                "This API key is not valid or has been revoked.", reason="INVALID_API_KEY"
            )
        return active[1]

    @staticmethod
    def authorize(principal: Principal, required_scopes: frozenset[str]) -> None:
        """Raise ``PermissionDenied`` (MISSING_SCOPE) unless the key holds one of the
        required scopes or ``admin``. An empty requirement (``ADMIN``) means admin only.
        """
        if principal.has_any_scope(required_scopes):
            return
        accepted = [*sorted(required_scopes), Scope.ADMIN.value]
        raise PermissionDenied(
            f"This API key may not make this call; it needs one of the scopes "
            f"{', '.join(accepted)}.",
            reason="MISSING_SCOPE",
            metadata={"required": "|".join(accepted)},
        )


# ----------------------------------------------------------------- per-RPC requirements


class ScopeMap(Mapping[str, frozenset[str]]):
    """The scopes each RPC of one gRPC service accepts, declared next to its servicer::

        REQUIRED_SCOPES = ScopeMap(GetBalance=READ, Redeem=POS, CreateProgram=ADMIN)

    Keys are the RPC names as in the proto. A method that is not listed requires
    ``admin``: look methods up with ``required`` so that forgetting to declare a new RPC
    fails closed, never open.
    """

    __slots__ = ("_by_method",)

    def __init__(self, **by_method: frozenset[str]) -> None:
        known = {scope.value for scope in Scope}
        for method, required in by_method.items():
            # Catch, at import time, the mistakes that would silently make an RPC admin-only.
            if not method[:1].isupper():
                raise ValueError(f"{method!r}: use the RPC name from the proto, e.g. GetBalance")
            if unknown := set(required) - known:
                raise ValueError(
                    f"{method}: unknown scopes {sorted(unknown)}; known: {sorted(known)}"
                )
        self._by_method = dict(by_method)

    def required(self, method: str) -> frozenset[str]:
        """Scopes accepted by ``method`` (the bare RPC name, e.g. ``Redeem``)."""
        return self._by_method.get(method, ADMIN)

    def __getitem__(self, method: str) -> frozenset[str]:
        return self._by_method[method]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_method)

    def __len__(self) -> int:
        return len(self._by_method)


# ------------------------------------------------------------------- per-call principal

current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)


def get_principal() -> Principal:
    """The principal of the RPC being served; ``Unauthenticated`` outside an authenticated
    call (fail closed if a code path is ever reached without the interceptor)."""
    principal = current_principal.get()
    if principal is None:
        raise Unauthenticated("This call is not authenticated.")
    return principal


@contextmanager
def use_principal(principal: Principal) -> Iterator[Principal]:
    """Make ``principal`` the current one for the duration of the block."""
    token = current_principal.set(principal)
    try:
        yield principal
    finally:
        current_principal.reset(token)
