"""Settings: parsed once, validated with messages that say what to fix, all documented."""

from __future__ import annotations

import pytest

from gateway.config.gateway import GatewayConfig, load_config
from gateway.config.parsers import ConfigError, HostPort
from gateway.config.settings import SETTINGS
from gateway.transcoding.headers import CredentialPolicy
from tests.support.paths import REPO

README = REPO / "README.md"


def test_defaults() -> None:
    config = load_config({})
    assert config == GatewayConfig()
    assert config.listen == HostPort("127.0.0.1", 50051)
    assert config.embedded_emulator


def test_environment_and_flags() -> None:
    env = {
        "GATEWAY_LISTEN": "[::1]:6000",
        "GATEWAY_UPSTREAM_URL": "https://api.example.com/",
        "GATEWAY_UPSTREAM_CONCURRENCY": "8",
    }
    config = load_config(env, {"upstream_concurrency": "16"})
    assert config.listen == HostPort("::1", 6000)
    assert str(config.listen) == "[::1]:6000"
    assert config.upstream_url == "https://api.example.com"
    assert config.upstream_concurrency == 16


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GATEWAY_LISTEN": "50051"}, "GATEWAY_LISTEN='50051': expected HOST:PORT"),
        ({"GATEWAY_LISTEN": "127.0.0.1:99999"}, "outside 0-65535"),
        ({"GATEWAY_UPSTREAM_URL": "ftp://x"}, "http:// or https://"),
        ({"GATEWAY_UPSTREAM_URL": "https://u:p@x"}, "credentials do not belong"),
        ({"GATEWAY_AUTH_MODE": "magic"}, "must be one of passthrough"),
        ({"GATEWAY_AUTH_MODE": "service"}, "set GATEWAY_UPSTREAM_API_KEY"),
        ({"GATEWAY_UPSTREAM_CONCURRENCY": "0"}, "at least 1"),
        ({"GATEWAY_UPSTREAM_TIMEOUT": "soon"}, "GATEWAY_UPSTREAM_TIMEOUT"),
        ({"GATEWAY_LOG_FORMAT": "xml"}, "json, text"),
        ({"GATEWAY_CALLER_IDENTITY": "client-certificate"}, "set GATEWAY_TLS_CLIENT_CA"),
        (
            {"GATEWAY_REDIS_URL": "redis://r:6379/0", "GATEWAY_CALLER_RATE_LIMIT_RPS": "5"},
            "set GATEWAY_DIGEST_SALT",
        ),
        ({"GATEWAY_DIGEST_SALT": "short"}, "at least 16 characters"),
    ],
)
def test_bad_settings_say_what_to_fix(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        load_config(env)
    assert says in str(caught.value)


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"GATEWAY_LISTEN": "x", "GATEWAY_UPSTREAM_CONCURRENCY": "-1"})
    assert "GATEWAY_LISTEN" in str(caught.value)
    assert "GATEWAY_UPSTREAM_CONCURRENCY" in str(caught.value)


def test_secret_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"GATEWAY_UPSTREAM_API_KEY": "ggt_secret\nvalue"})
    assert "ggt_secret" not in str(caught.value)
    config = load_config({"GATEWAY_UPSTREAM_API_KEY": "ggt_secret", "GATEWAY_AUTH_MODE": "service"})
    assert "ggt_secret" not in repr(config)


@pytest.mark.parametrize(
    ("mode", "caller", "expected"),
    [
        ("passthrough", "Bearer c", "Bearer c"),
        ("passthrough", None, None),
        ("service", "Bearer c", "Bearer ggt_s"),
        ("service", None, "Bearer ggt_s"),
        ("passthrough-or-service", "Bearer c", "Bearer c"),
        ("passthrough-or-service", None, "Bearer ggt_s"),
    ],
)
def test_credential_policy(mode: str, caller: str | None, expected: str | None) -> None:
    key = None if mode == "passthrough" else "ggt_s"
    policy = CredentialPolicy(mode, key)  # type: ignore[arg-type]
    assert policy.authorization(caller) == expected


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in text, setting.env
        assert f"`{setting.flag}`" in text, setting.flag


def test_caller_keys_agree_between_replicas_only_through_a_shared_secret() -> None:
    salted = {"GATEWAY_DIGEST_SALT": "a-shared-secret-of-the-fleet"}
    one, two = load_config(salted).caller_keys(), load_config(salted).caller_keys()
    assert one.key("Bearer k") == two.key("Bearer k")
    keyed = {"GATEWAY_AUTH_MODE": "service", "GATEWAY_UPSTREAM_API_KEY": "ggt_gateway"}
    assert load_config(keyed).caller_keys().key("Bearer k") == (
        load_config(keyed).caller_keys().key("Bearer k")
    )
    assert load_config(keyed).caller_keys().key("Bearer k") != one.key("Bearer k")
    assert "a-shared-secret" not in repr(load_config(salted))


def test_a_misspelt_variable_is_warned_about_with_a_suggestion() -> None:
    from gateway.config.gateway import unknown_variables

    env = {
        "GATEWAY_UPSTREAM_UR": "http://x",
        "GATEWAY_LISTEN": "127.0.0.1:1",
        "GATEWAY_SOMETHING_ELSE_ENTIRELY": "1",
        "GATEWAY_WORKER_INDEX": "0",
        "PATH": "/bin",
    }
    warnings = unknown_variables(env)
    assert len(warnings) == 2
    assert "did you mean GATEWAY_UPSTREAM_URL?" in warnings[1]
    assert "GATEWAY_SOMETHING_ELSE_ENTIRELY is not a setting" in warnings[0]
