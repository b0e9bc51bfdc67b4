"""Settings: read once, typed, frozen, and failing fast with the variable's name."""

from __future__ import annotations

import pydantic
import pytest

from tickstrata.common.settings import SettingsError, env_var_name, load_settings
from tickstrata.query.settings import QuerySettings
from tickstrata.writer.settings import WriterSettings
from tickstrata_operator.settings import OperatorSettings


def test_defaults_without_any_variable() -> None:
    settings = load_settings(WriterSettings, {})
    assert settings.health_port == 8082
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.shutdown_timeout_secs == 20.0
    assert settings.log_json is True


def test_values_are_read_with_the_service_prefix_only() -> None:
    settings = load_settings(
        WriterSettings,
        {
            "WRITER_HEALTH_PORT": "9100",
            "writer_log_json": "false",
            "WRITER_REDIS_URL": "redis://cache:6380/2",
            "QUERY_HEALTH_PORT": "9999",  # another service's variable must not leak in
            "HEALTH_PORT": "1",
        },
    )
    assert settings.health_port == 9100
    assert settings.log_json is False
    assert settings.redis_url == "redis://cache:6380/2"


def test_each_service_has_its_own_prefix() -> None:
    assert env_var_name(WriterSettings, "redis_url") == "WRITER_REDIS_URL"
    assert env_var_name(QuerySettings, "grpc_port") == "QUERY_GRPC_PORT"
    assert env_var_name(OperatorSettings, "namespace") == "OPERATOR_NAMESPACE"


def test_settings_are_frozen() -> None:
    settings = load_settings(QuerySettings, {})
    with pytest.raises(pydantic.ValidationError):
        settings.grpc_port = 1  # type: ignore[misc]


def test_every_bad_variable_is_named_with_its_value() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            WriterSettings,
            {"WRITER_HEALTH_PORT": "70000", "WRITER_REDIS_URL": "http://nope", "WRITER_LOG_LEVEL": "LOUD"},
        )
    message = str(caught.value)
    assert message.startswith("invalid WriterSettings configuration:")
    assert "WRITER_HEALTH_PORT" in message
    assert "70000" in message
    assert "WRITER_REDIS_URL" in message
    assert "'http://nope'" in message
    assert "WRITER_LOG_LEVEL" in message
    assert len(message.splitlines()) == 4


def test_process_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUERY_GRPC_PORT", "50999")
    assert load_settings(QuerySettings).grpc_port == 50999
    monkeypatch.setenv("QUERY_GRPC_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="QUERY_GRPC_PORT"):
        load_settings(QuerySettings)


def test_a_prefixed_variable_that_names_no_setting_is_refused_never_ignored() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(WriterSettings, {"WRITER_REDIS_UR": "redis://secret@cache/0", "WRITER_STAGE": "x"})
    message = str(caught.value)
    assert "WRITER_REDIS_UR: not a setting of this service; did you mean WRITER_REDIS_URL?" in message
    assert "WRITER_STAGE: not a setting of this service; `tickstrata writer --help` lists them" in message
    assert "secret" not in message  # a misplaced DSN's password never reaches the log


def test_unknown_and_invalid_variables_are_reported_together() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(QuerySettings, {"QUERY_GRPC_PORT": "-5", "QUERY_GRPC_PROT": "1"})
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid QuerySettings configuration:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["QUERY_GRPC_PORT", "QUERY_GRPC_PROT"]


def test_the_process_environment_is_checked_for_unknown_variables_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUERY_CACHE_TTL", "5")
    with pytest.raises(SettingsError, match="QUERY_CACHE_TTL: not a setting"):
        load_settings(QuerySettings)
    monkeypatch.delenv("QUERY_CACHE_TTL")
    monkeypatch.setenv("OTHER_CACHE_TTL", "5")  # no prefix of the service: not its business
    assert load_settings(QuerySettings).stale_after_ms == 10_000
