"""``loyalty keys``: the file it writes is what the services verify against."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from shared.auth import Authenticator, KeyStore, generate_key
from shared.errors import Unauthenticated
from shared.keys_cli import DEFAULT_KEYS_FILE, KEYS_FILE_ENV, keys_app, write_key_file

# An environment without the variable, so each test decides where the file is.
runner = CliRunner(env={KEYS_FILE_ENV: None})


def keys(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    return runner.invoke(keys_app, [str(arg) for arg in args], env=env)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def bearer(key: str) -> list[tuple[str, str | bytes]]:
    return [("authorization", f"Bearer {key}")]


def test_create_list_revoke_and_the_key_stops_working(tmp_path: Path) -> None:
    file = tmp_path / "data" / "api-keys.json"

    created = keys("create", "till-3", "-s", "pos", "--scope", "reader", "-p", "p1", "--file", file)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()  # the key, and only the key, on stdout
    assert key.startswith("lk_")
    assert "shown only this once" in created.stderr
    assert mode(file) == 0o600
    assert key not in file.read_text()
    assert key[16:] not in file.read_text()

    principal = Authenticator(KeyStore.load(file)).authenticate(bearer(key))
    assert principal.scopes == {"pos", "reader"}
    assert principal.programs == frozenset({"p1"})

    listed = keys("list", "--file", file)
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "SCOPES", "PROGRAMS", "CREATED", "REVOKED"]
    key_id, name, scopes, programs, created_at, revoked_at = row.split()
    assert (key_id, name, scopes, programs) == (principal.key_id, "till-3", "pos,reader", "p1")
    assert created_at.endswith("Z")
    assert revoked_at == "-"
    stored_hash = json.loads(file.read_text())["keys"][0]["hash"]
    assert stored_hash not in listed.output
    assert key[16:] not in listed.output

    revoked = keys("revoke", principal.key_id, "--file", file)
    assert revoked.exit_code == 0, revoked.output
    assert mode(file) == 0o600
    with pytest.raises(Unauthenticated) as caught:
        Authenticator(KeyStore.load(file)).authenticate(bearer(key))
    assert caught.value.reason == "INVALID_API_KEY"
    assert keys("list", "--file", file).stdout.splitlines()[1].split()[-1] != "-"

    again = keys("revoke", principal.key_id, "--file", file)
    assert again.exit_code == 0
    assert "already revoked" in again.stdout


def test_keys_default_to_all_programs_and_accumulate(tmp_path: Path) -> None:
    file = tmp_path / "api-keys.json"
    first = keys("create", "gateway", "-s", "service", "--file", file).stdout.strip()
    second = keys("create", "ops", "-s", "admin", "--file", file).stdout.strip()

    authenticator = Authenticator(KeyStore.load(file))
    assert authenticator.authenticate(bearer(first)).name == "gateway"
    assert authenticator.authenticate(bearer(second)).has_any_scope(frozenset())
    assert "all" in keys("list", "--file", file).stdout


def test_file_comes_from_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    from_env = tmp_path / "env-keys.json"

    assert keys("create", "a", "-s", "pos", env={KEYS_FILE_ENV: str(from_env)}).exit_code == 0
    assert keys("create", "b", "-s", "pos").exit_code == 0

    assert [r.name for r in KeyStore.load(from_env).records] == ["a"]
    assert [r.name for r in KeyStore.load(tmp_path / DEFAULT_KEYS_FILE).records] == ["b"]


def test_unknown_scope_is_refused_with_the_valid_ones(tmp_path: Path) -> None:
    file = tmp_path / "api-keys.json"
    result = keys("create", "till", "-s", "pso", "--file", file)

    assert result.exit_code == 2
    for scope in ("admin", "pos", "reader", "service"):
        assert scope in result.stderr
    assert not file.exists()


def test_create_without_a_scope_is_refused(tmp_path: Path) -> None:
    result = keys("create", "till", "--file", tmp_path / "api-keys.json")
    assert result.exit_code == 2
    assert "--scope" in result.stderr


def test_revoking_an_unknown_id_fails_clearly(tmp_path: Path) -> None:
    file = tmp_path / "api-keys.json"
    keys("create", "till", "-s", "pos", "--file", file)

    result = keys("revoke", "0123456789ab", "--file", file)
    assert result.exit_code == 1
    assert "no API key with id '0123456789ab'" in result.stderr


def test_missing_or_broken_file_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    missing = keys("list", "--file", tmp_path / "nope.json")
    assert missing.exit_code == 1
    assert "no such API keys file" in missing.stderr

    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1, "keys": [{"id": "x"}]}')
    for args in (["list"], ["revoke", "x"], ["create", "till", "-s", "pos"]):
        result = keys(*args, "--file", broken)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"error: {broken}: keys[0].id")
        assert "Traceback" not in result.output
    assert broken.read_text() == '{"version": 1, "keys": [{"id": "x"}]}'


def test_bad_program_id_is_refused(tmp_path: Path) -> None:
    result = keys("create", "till", "-s", "pos", "-p", "has space", "--file", tmp_path / "k.json")
    assert result.exit_code == 1
    assert "programs[0]" in result.stderr


def test_list_of_an_empty_file(tmp_path: Path) -> None:
    file = tmp_path / "api-keys.json"
    write_key_file(file, KeyStore())
    assert keys("list", "--file", file).stdout == f"No API keys in {file}.\n"


def test_write_key_file_replaces_atomically_with_owner_only_permissions(tmp_path: Path) -> None:
    file = tmp_path / "new" / "dir" / "api-keys.json"
    _, first = generate_key("first", ["pos"])
    _, second = generate_key("second", ["pos"])

    write_key_file(file, KeyStore([first]))
    assert mode(file) == 0o600
    file.chmod(0o644)  # e.g. copied in by hand
    inode = file.stat().st_ino

    write_key_file(file, KeyStore([first, second]))
    assert mode(file) == 0o600
    assert file.stat().st_ino != inode  # a new file renamed into place, not rewritten
    assert KeyStore.load(file).records == (first, second)
    assert os.listdir(file.parent) == ["api-keys.json"]  # no temporary file left behind


def test_failed_write_leaves_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "api-keys.json"
    (target / "occupied").mkdir(parents=True)  # a directory cannot be replaced by a file

    with pytest.raises(IsADirectoryError):
        write_key_file(target, KeyStore())
    assert os.listdir(tmp_path) == ["api-keys.json"]
    assert os.listdir(target) == ["occupied"]
