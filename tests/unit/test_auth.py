"""API keys: verification, scope and program checks, the key document."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from shared.auth import (
    ADMIN,
    ALL_PROGRAMS,
    POS,
    READ,
    SERVICE,
    Authenticator,
    KeyConfigError,
    KeyRecord,
    KeyStore,
    Principal,
    Scope,
    ScopeMap,
    current_principal,
    generate_key,
    get_principal,
    use_principal,
)
from shared.errors import PermissionDenied, Unauthenticated

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def bearer(key: str) -> list[tuple[str, str | bytes]]:
    return [("authorization", f"Bearer {key}")]


def unauthenticated_reason(authenticator: Authenticator, metadata: Any) -> str:
    with pytest.raises(Unauthenticated) as caught:
        authenticator.authenticate(metadata)
    return caught.value.reason


def principal(*scopes: str, programs: frozenset[str] | None = None) -> Principal:
    return Principal("0123456789ab", "test", frozenset(scopes), programs or ALL_PROGRAMS)


# ------------------------------------------------------------------------ authenticate


def test_generated_key_authenticates_as_its_record() -> None:
    key, record = generate_key("store 12 till 3", ["pos", "reader"], ["p2", "p1"], now=NOW)
    found = Authenticator(KeyStore([record])).authenticate(bearer(key))

    assert key.startswith(f"lk_{record.id}_")
    assert len(key) == len("lk_") + 12 + len("_") + 43  # 32 random bytes, url-safe base64
    assert found == Principal(
        key_id=record.id,
        name="store 12 till 3",
        scopes=frozenset({"pos", "reader"}),
        programs=frozenset({"p1", "p2"}),
    )


def test_record_stores_a_hash_never_the_secret() -> None:
    key, record = generate_key("till", ["pos"], now=NOW)
    secret = key[len(f"lk_{record.id}_") :]
    document = KeyStore([record]).to_json()

    assert secret not in document
    assert key not in document
    assert len(record.hash) == 64
    assert record.hash not in repr(record)


def test_any_capitalisation_of_scheme_and_header_and_bytes_values_are_accepted() -> None:
    key, record = generate_key("till", ["pos"], now=NOW)
    authenticator = Authenticator(KeyStore([record]))

    accepted: list[list[tuple[str, str | bytes]]] = [
        [("Authorization", f"bearer {key}")],
        [("authorization", f"BEARER   {key} ")],
        [("x-request-id", "abc"), ("authorization", f"Bearer {key}".encode())],
    ]
    for metadata in accepted:
        assert authenticator.authenticate(metadata).key_id == record.id


@pytest.mark.parametrize("metadata", [None, [], [("x-request-id", "r1")]])
def test_missing_header_is_missing_credentials(metadata: Any) -> None:
    assert unauthenticated_reason(Authenticator(KeyStore()), metadata) == "MISSING_CREDENTIALS"


def test_malformed_headers_are_malformed_credentials() -> None:
    key, record = generate_key("till", ["pos"], now=NOW)
    authenticator = Authenticator(KeyStore([record]))

    for value in (
        "",
        "Bearer",
        "Bearer ",
        key,  # no scheme
        f"Basic {key}",
        "Bearer not-a-loyalty-key",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc",  # a JWT
        f"Bearer {key} extra",
        f"Bearer {key[:-20]}",  # secret too short
        f"Bearer lk_ABCDEF012345_{key[16:]}",  # ids are lowercase
        "Bearer lk_" + "a" * 12 + "_" + "s" * 300,  # absurdly long secret
    ):
        reason = unauthenticated_reason(authenticator, [("authorization", value)])
        assert reason == "MALFORMED_CREDENTIALS", value

    assert (
        unauthenticated_reason(authenticator, [("authorization", "Bearer l\xe9k".encode())])
        == "MALFORMED_CREDENTIALS"
    )
    assert (
        unauthenticated_reason(authenticator, bearer(key) + bearer(key)) == "MALFORMED_CREDENTIALS"
    )


def test_wrong_secret_unknown_id_and_revoked_key_are_all_invalid_api_key() -> None:
    _, record = generate_key("till", ["pos"], now=NOW)
    revoked_key, revoked = generate_key("old till", ["pos"], now=NOW)
    store = KeyStore([record, revoked]).with_revoked(revoked.id, NOW)
    authenticator = Authenticator(store)
    other_key, _ = generate_key("elsewhere", ["pos"], now=NOW)
    wrong_secret = f"lk_{record.id}_{other_key[16:]}"

    for candidate in (wrong_secret, other_key, revoked_key):
        with pytest.raises(Unauthenticated) as caught:
            authenticator.authenticate(bearer(candidate))
        error = caught.value
        assert error.reason == "INVALID_API_KEY"
        # The same words whichever way it failed, and nothing secret in them.
        assert error.message == "This API key is not valid or has been revoked."
        assert error.metadata == {}


def test_errors_never_quote_the_key_or_the_hash() -> None:
    key, record = generate_key("till", ["pos"], now=NOW)
    authenticator = Authenticator(KeyStore([record]))

    other_last = "B" if key.endswith("A") else "A"
    for value in (f"Basic {key}", f"Bearer {key}x", f"Bearer {key[:-1]}{other_last}"):
        with pytest.raises(Unauthenticated) as caught:
            authenticator.authenticate([("authorization", value)])
        text = f"{caught.value} {caught.value.metadata}"
        assert key[16:] not in text
        assert record.hash not in text
        assert record.id not in text


@given(
    name=st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40),
    scopes=st.sets(st.sampled_from(list(Scope)), min_size=1),
    data=st.data(),
)
def test_every_generated_key_verifies_and_no_one_character_change_does(
    name: str, scopes: set[Scope], data: st.DataObject
) -> None:
    key, record = generate_key(name, scopes, now=NOW)
    authenticator = Authenticator(KeyStore([record]))
    assert authenticator.authenticate(bearer(key)).scopes == scopes

    secret_start = len(f"lk_{record.id}_")
    index = data.draw(st.integers(secret_start, len(key) - 1), label="index")
    replacement = data.draw(st.sampled_from(URLSAFE.replace(key[index], "")), label="char")
    mutated = key[:index] + replacement + key[index + 1 :]

    assert unauthenticated_reason(authenticator, bearer(mutated)) == "INVALID_API_KEY"


# ---------------------------------------------------------------------------- authorize


def test_scope_constants() -> None:
    assert {"reader", "pos", "service"} == READ
    assert {"pos", "service"} == POS
    assert {"service"} == SERVICE
    assert frozenset() == ADMIN


@pytest.mark.parametrize(
    ("scopes", "required", "allowed"),
    [
        ({"admin"}, ADMIN, True),
        ({"admin"}, SERVICE, True),
        ({"pos"}, POS, True),
        ({"pos"}, READ, True),
        ({"service"}, POS, True),
        ({"reader"}, READ, True),
        ({"reader"}, POS, False),
        ({"pos"}, SERVICE, False),
        ({"pos", "reader", "service"}, ADMIN, False),
    ],
)
def test_any_required_scope_or_admin_passes(
    scopes: set[str], required: frozenset[str], allowed: bool
) -> None:
    caller = principal(*scopes)
    assert caller.has_any_scope(required) is allowed
    if allowed:
        Authenticator.authorize(caller, required)
    else:
        with pytest.raises(PermissionDenied):
            Authenticator.authorize(caller, required)


def test_missing_scope_names_the_scopes_that_would_do() -> None:
    with pytest.raises(PermissionDenied) as caught:
        Authenticator.authorize(principal("reader"), POS)
    assert caught.value.reason == "MISSING_SCOPE"
    assert caught.value.metadata == {"required": "pos|service|admin"}

    with pytest.raises(PermissionDenied) as caught:
        Authenticator.authorize(principal("pos"), ADMIN)
    assert caught.value.metadata == {"required": "admin"}


def test_scope_map_treats_unlisted_methods_as_admin_only() -> None:
    scopes = ScopeMap(GetBalance=READ, Redeem=POS)

    assert scopes.required("GetBalance") == READ
    assert scopes.required("Redeem") == POS
    assert scopes.required("DeleteEverything") == ADMIN
    assert dict(scopes) == {"GetBalance": READ, "Redeem": POS}
    with pytest.raises(PermissionDenied):
        Authenticator.authorize(principal("pos", "service"), scopes.required("NewRpc"))
    Authenticator.authorize(principal("admin"), scopes.required("NewRpc"))


def test_scope_map_rejects_unknown_scopes_and_python_style_names() -> None:
    with pytest.raises(ValueError, match="unknown scopes"):
        ScopeMap(GetBalance=frozenset({"raeder"}))
    with pytest.raises(ValueError, match="RPC name"):
        ScopeMap(get_balance=READ)


def test_program_restrictions_apply_to_every_scope() -> None:
    everywhere = principal("pos")
    restricted = principal("admin", programs=frozenset({"p1"}))

    everywhere.require_program("any-program")
    restricted.require_program("p1")
    with pytest.raises(PermissionDenied) as caught:
        restricted.require_program("p2")
    assert caught.value.reason == "PROGRAM_NOT_ALLOWED"
    assert caught.value.metadata == {"program_id": "p2"}


def test_star_means_all_programs_in_records() -> None:
    _, everywhere = generate_key("a", ["pos"], now=NOW)
    _, some = generate_key("b", ["pos"], ["p1"], now=NOW)
    assert everywhere.principal().programs is ALL_PROGRAMS
    assert some.principal().programs == frozenset({"p1"})


# --------------------------------------------------------------------- current principal


def test_get_principal_outside_a_call_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        get_principal()


def test_use_principal_binds_for_the_block_and_the_tasks_it_starts() -> None:
    caller = principal("pos")

    async def seen_by_task() -> Principal | None:
        return current_principal.get()

    async def main() -> tuple[Principal | None, Principal | None]:
        with use_principal(caller):
            inside = await asyncio.create_task(seen_by_task())
        return inside, await asyncio.create_task(seen_by_task())

    inside, after = asyncio.run(main())
    assert inside is caller
    assert after is None
    with use_principal(caller):
        assert get_principal() is caller
    assert current_principal.get() is None


# -------------------------------------------------------------------------- key document


def document(**overrides: Any) -> dict[str, Any]:
    record = {
        "id": "0123456789ab",
        "name": "till",
        "hash": "ab" * 32,
        "scopes": ["pos"],
        "programs": ["*"],
        "created_at": "2025-03-01T09:30:00Z",
        "revoked_at": None,
    }
    return {"version": 1, "keys": [record | overrides]}


def test_document_round_trips_in_rfc3339() -> None:
    _, record = generate_key("till", ["reader", "pos", "pos"], now=NOW)
    store = KeyStore([record]).with_revoked(record.id, NOW)
    text = store.to_json()

    assert KeyStore.parse(text).records == store.records
    stored = json.loads(text)["keys"][0]
    assert stored["scopes"] == ["pos", "reader"]
    assert stored["created_at"] == stored["revoked_at"] == "2025-03-01T09:30:00Z"


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("{not json", "Invalid JSON"),
        (json.dumps({"keys": []}), "version: Field required"),
        (json.dumps({"version": 2, "keys": []}), "version: Input should be 1"),
        (json.dumps(document(scopes=["pos", "root"])), "keys[0].scopes[1]: Input should be"),
        (json.dumps(document(scopes=[])), "keys[0].scopes"),
        (json.dumps(document(hash="lk_0123456789ab_secret")), "keys[0].hash"),
        (json.dumps(document(programs=["*", "p1"])), "cannot be mixed"),
        (json.dumps(document(created_at="2025-03-01T09:30:00")), "timezone"),
        (json.dumps(document(secret="x")), "keys[0].secret: Extra inputs are not permitted"),
        (
            json.dumps({"version": 1, "keys": document()["keys"] * 2}),
            "duplicate key id 0123456789ab",
        ),
    ],
)
def test_bad_documents_name_the_problem(bad: str, problem: str) -> None:
    with pytest.raises(KeyConfigError) as caught:
        KeyStore.parse(bad, source="keys.json")
    message = str(caught.value)
    assert message.startswith("keys.json: ")
    assert problem in message
    assert "lk_0123456789ab_secret" not in message


def test_from_settings_reads_the_file_the_environment_or_both(tmp_path: Path) -> None:
    key_a, a = generate_key("file key", ["pos"], now=NOW)
    key_b, b = generate_key("env key", ["service"], now=NOW)
    path = tmp_path / "keys.json"
    path.write_text(KeyStore([a]).to_json())
    inline = SecretStr(KeyStore([b]).to_json())

    assert KeyStore.from_settings(path, None).records == (a,)
    assert KeyStore.from_settings(None, inline).records == (b,)
    both = Authenticator(KeyStore.from_settings(path, inline))
    assert both.authenticate(bearer(key_a)).key_id == a.id
    assert both.authenticate(bearer(key_b)).key_id == b.id


def test_from_settings_errors(tmp_path: Path) -> None:
    _, record = generate_key("k", ["pos"], now=NOW)
    path = tmp_path / "keys.json"
    path.write_text(KeyStore([record]).to_json())

    with pytest.raises(KeyConfigError, match="no API keys configured"):
        KeyStore.from_settings(None, None)
    with pytest.raises(KeyConfigError, match="cannot read API keys"):
        KeyStore.from_settings(tmp_path / "missing.json", None)
    with pytest.raises(KeyConfigError, match=r"^LOYALTY_API_KEYS: "):
        KeyStore.from_settings(None, "[]")
    with pytest.raises(KeyConfigError, match="duplicate key id"):
        KeyStore.from_settings(path, KeyStore([record]).to_json())


def test_generate_key_rejects_bad_input() -> None:
    with pytest.raises(KeyConfigError, match="scopes"):
        generate_key("till", ["root"])
    with pytest.raises(KeyConfigError, match="name"):
        generate_key("line\nbreak", ["pos"])
    with pytest.raises(KeyConfigError, match="programs"):
        generate_key("till", ["pos"], [])


def test_revoking_an_unknown_key_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        KeyStore().with_revoked("0123456789ab", NOW)


def test_revoking_twice_keeps_the_first_time() -> None:
    _, record = generate_key("till", ["pos"], now=NOW)
    once = KeyStore([record]).with_revoked(record.id, NOW)
    later = datetime(2026, 1, 1, tzinfo=UTC)
    revoked = once.with_revoked(record.id, later).get(record.id)
    assert isinstance(revoked, KeyRecord)
    assert revoked.revoked_at == NOW
