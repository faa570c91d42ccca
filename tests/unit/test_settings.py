"""Settings come from LOYALTY_* variables; a bad environment names the variable."""

import pytest

from services.gateway.settings import GatewaySettings
from services.points.settings import PointsSettings
from services.tiers.settings import TiersSettings
from shared.settings import SettingsError, load_settings


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("LOYALTY_"):
            monkeypatch.delenv(name)
    keys = tmp_path / "keys.json"
    keys.write_text('{"version": 1, "keys": []}')
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("LOYALTY_API_KEYS_FILE", str(keys))
    return monkeypatch


def test_defaults_give_each_service_its_own_ports(env):
    settings = load_settings(TiersSettings)
    assert settings.effective_grpc_port == 50053
    assert settings.effective_metrics_port == 9463
    env.setenv("LOYALTY_GRPC_PORT", "0")
    env.setenv("LOYALTY_METRICS_PORT", "0")
    settings = load_settings(TiersSettings)
    assert settings.effective_grpc_port == 0  # any free port
    assert settings.effective_metrics_port == 0  # metrics off


def test_a_missing_variable_is_named(env):
    env.delenv("LOYALTY_DATABASE_URL")
    with pytest.raises(SettingsError) as failed:
        load_settings(TiersSettings)
    assert "LOYALTY_DATABASE_URL" in str(failed.value)


def test_a_malformed_variable_is_named_and_every_problem_is_listed(env):
    env.setenv("LOYALTY_GRPC_PORT", "eighty")
    env.setenv("LOYALTY_MAX_CONCURRENT_RPCS", "0")
    with pytest.raises(SettingsError) as failed:
        load_settings(TiersSettings)
    message = str(failed.value)
    assert "LOYALTY_GRPC_PORT" in message
    assert "LOYALTY_MAX_CONCURRENT_RPCS" in message


def test_services_that_call_others_need_their_targets_and_key(env):
    with pytest.raises(SettingsError) as failed:
        load_settings(GatewaySettings)
    message = str(failed.value)
    for variable in ("LOYALTY_SERVICE_KEY", "LOYALTY_POINTS_TARGET", "LOYALTY_TIERS_TARGET"):
        assert variable in message


def test_api_keys_are_required_and_secrets_are_not_echoed(env):
    env.delenv("LOYALTY_API_KEYS_FILE")
    env.setenv("LOYALTY_SERVICE_KEY", "lk_supersecret")
    env.setenv("LOYALTY_TIERS_TARGET", "dns:///tiers:50053")
    env.setenv("LOYALTY_PROMOTIONS_TARGET", "dns:///promotions:50052")
    with pytest.raises(SettingsError) as failed:
        load_settings(PointsSettings)
    assert "LOYALTY_API_KEYS" in str(failed.value)
    assert "supersecret" not in str(failed.value)


def test_required_variables_are_listed_for_deployments():
    assert set(PointsSettings.required_env()) == {
        "LOYALTY_DATABASE_URL",
        "LOYALTY_SERVICE_KEY",
        "LOYALTY_TIERS_TARGET",
        "LOYALTY_PROMOTIONS_TARGET",
    }
