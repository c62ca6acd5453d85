"""The notification settings and secrets: validated with the others, refusing plain http except loopback,
requiring the signing secret with WEBHOOK_URLS, never quoting a URL's path or query or a secret; the two
secrets read from Key Vault (the stand-in, through the real SDK) or from app settings without it."""

from __future__ import annotations

import base64

import pytest

from shared.errors import SecretsError
from shared.identity import azure_credential
from shared.secrets import TEAMS_WORKFLOW_URL, WEBHOOK_SIGNING_SECRET, credential_store
from shared.settings import Settings, SettingsError, environment_secrets
from shared.signing_secret import new_secret
from tests.support.settings import MINIMAL

WITHOUT_VAULT = {
    "SNAPSHOT_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net",
    "PARTNER_CENTER_TENANT_ID": "t",
    "PARTNER_CENTER_CLIENT_ID": "c",
    "PARTNER_CENTER_CLIENT_SECRET": "s",
}
TEAMS = "https://prod-12.westeurope.logic.azure.com:443/workflows/0a1b2c3d4e5f/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=S1gnatur3-0f-the-w0rkfl0w"


def test_notifications_are_off_by_default():
    settings = Settings.from_env(MINIMAL)
    assert (settings.teams_quiet_nights, settings.webhook_urls, settings.api_public_url) == (False, (), None)


def test_webhook_urls_are_separated_by_commas_or_spaces_and_deduplicated():
    settings = Settings.from_env(
        {
            **MINIMAL,
            "WEBHOOK_URLS": " https://a.example/hook/1,https://b.example/h  http://127.0.0.1:9000/x,\n"
            "https://a.example/hook/1 ",
            "TEAMS_QUIET_NIGHTS": "TRUE",
            "API_PUBLIC_URL": "https://func-abc.azurewebsites.net/",
        }
    )
    assert settings.webhook_urls == (
        "https://a.example/hook/1",
        "https://b.example/h",
        "http://127.0.0.1:9000/x",
    )
    assert settings.teams_quiet_nights is True
    assert settings.api_public_url == "https://func-abc.azurewebsites.net"
    assert "a.example" not in repr(settings)  # a hook's path may hold its token


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (
            "WEBHOOK_URLS",
            "http://hooks.example.com/T0K3N-in-path-0123456789",
            "WEBHOOK_URLS URL 1 must be an https:// URL (plain http is allowed for loopback only), "
            "got http for host hooks.example.com",
        ),
        (
            "WEBHOOK_URLS",
            "https://ok.example/a ftp://x.example/T0K3N-in-path-0123456789",
            "WEBHOOK_URLS URL 2 must be an https:// URL",
        ),
        (
            "WEBHOOK_URLS",
            "https://user:T0K3N-in-path-0123456789@x.example/",
            "WEBHOOK_URLS URL 1 must not carry a user name or password",
        ),
        (
            "API_PUBLIC_URL",
            "http://func.example.net/T0K3N-in-path-0123456789",
            "API_PUBLIC_URL must be an https:// URL",
        ),
        ("TEAMS_QUIET_NIGHTS", "sometimes", "TEAMS_QUIET_NIGHTS must be true or false, got 'sometimes'"),
    ],
)
def test_a_bad_notification_setting_is_named_without_its_path_or_query(name, value, problem):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**MINIMAL, "WEBHOOK_SIGNING_SECRET": new_secret(), name: value})
    assert problem in str(refused.value)
    assert "T0K3N" not in str(refused.value)


def test_more_than_ten_webhook_urls_are_refused():
    urls = " ".join(f"https://h{n}.example/x" for n in range(11))
    with pytest.raises(SettingsError, match="WEBHOOK_URLS names 11 URLs, at most 10"):
        Settings.from_env({**MINIMAL, "WEBHOOK_URLS": urls})


def test_plain_http_to_loopback_is_allowed_for_local_receivers():
    settings = Settings.from_env(
        {
            **WITHOUT_VAULT,
            "WEBHOOK_URLS": "http://localhost:8080/h http://[::1]:81/h",
            "WEBHOOK_SIGNING_SECRET": new_secret(),
            "TEAMS_WORKFLOW_URL": "http://127.0.0.1:7000/workflows/x?sig=abc",
            "API_PUBLIC_URL": "http://127.0.0.1:7071",
        }
    )
    assert len(settings.webhook_urls) == 2


def test_without_key_vault_a_missing_signing_secret_fails_validation_naming_it():
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**WITHOUT_VAULT, "WEBHOOK_URLS": "https://a.example/h"})
    assert "WEBHOOK_SIGNING_SECRET is required when WEBHOOK_URLS is set" in str(refused.value)
    assert "webhook-signing-secret" in str(refused.value)


def test_with_key_vault_the_signing_secret_is_checked_where_it_is_read():
    settings = Settings.from_env({**MINIMAL, "WEBHOOK_URLS": "https://a.example/h"})
    assert settings.webhook_urls == ("https://a.example/h",)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (
            "WEBHOOK_SIGNING_SECRET",
            "S3cr3tValueWithoutThePrefix0123",
            "WEBHOOK_SIGNING_SECRET must be a Standard Webhooks secret",
        ),
        ("WEBHOOK_SIGNING_SECRET", "whsec_" + base64.b64encode(b"S3cr3t").decode(), "24 to 64 bytes"),
        (
            "TEAMS_WORKFLOW_URL",
            TEAMS.replace("https://", "http://"),
            "TEAMS_WORKFLOW_URL must be an https:// URL",
        ),
    ],
)
def test_a_bad_secret_setting_is_refused_without_its_value(name, value, problem):
    env = {**WITHOUT_VAULT, "WEBHOOK_URLS": "https://a.example/h", "WEBHOOK_SIGNING_SECRET": new_secret()}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**env, name: value})
    message = str(refused.value)
    assert problem in message
    for part in ("S3cr3t", "UzNjcjN0", "sig=", "S1gnatur3", "/workflows/"):
        assert part not in message


# -- the secrets, from Key Vault or from app settings -----------------------------------------------------
def store():
    import os

    return credential_store(
        os.environ.get("KEY_VAULT_URL"), lambda: azure_credential(None), environment=environment_secrets()
    )


def test_key_vault_holds_the_teams_url_and_the_signing_secret(make_stack):
    stack, _snapshots = make_stack()
    signing = new_secret()
    stack.key_vault.set(TEAMS_WORKFLOW_URL, TEAMS)
    stack.key_vault.set(WEBHOOK_SIGNING_SECRET, signing)
    secrets = store().notification_secrets(webhooks=True)
    assert (secrets.teams_workflow_url, secrets.webhook_signing_secret) == (TEAMS, signing)
    assert "S1gnatur3" not in repr(secrets) and signing not in repr(secrets)


def test_without_the_secrets_in_key_vault_nothing_is_sent_and_nothing_fails(make_stack):
    make_stack()
    secrets = store().notification_secrets(webhooks=False)
    assert (secrets.teams_workflow_url, secrets.webhook_signing_secret) == (None, None)


def test_a_missing_signing_secret_in_key_vault_is_named_with_the_vault(make_stack):
    stack, _snapshots = make_stack()
    with pytest.raises(SecretsError) as refused:
        store().notification_secrets(webhooks=True)
    assert "'webhook-signing-secret'" in str(refused.value) and stack.key_vault.url in str(refused.value)
    assert "required when WEBHOOK_URLS is set" in str(refused.value)


def test_a_plain_http_teams_url_in_key_vault_is_refused_without_being_quoted(make_stack):
    stack, _snapshots = make_stack()
    stack.key_vault.set(TEAMS_WORKFLOW_URL, TEAMS.replace("https://", "http://"))
    with pytest.raises(SecretsError) as refused:
        store().notification_secrets(webhooks=False)
    assert "'teams-workflow-url'" in str(refused.value) and "must be an https:// URL" in str(refused.value)
    assert "S1gnatur3" not in str(refused.value) and "/workflows/" not in str(refused.value)


def test_a_bad_signing_secret_in_key_vault_is_refused_without_being_quoted(make_stack):
    stack, _snapshots = make_stack()
    stack.key_vault.set(WEBHOOK_SIGNING_SECRET, "S3cr3tValueWithoutThePrefix0123")
    with pytest.raises(SecretsError) as refused:
        store().notification_secrets(webhooks=True)
    assert "'webhook-signing-secret'" in str(refused.value) and "S3cr3t" not in str(refused.value)


def test_without_key_vault_the_app_settings_hold_the_secrets(make_stack, monkeypatch):
    make_stack(key_vault=False)
    signing = new_secret()
    monkeypatch.setenv("TEAMS_WORKFLOW_URL", TEAMS)
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", signing)
    secrets = store().notification_secrets(webhooks=True)
    assert (secrets.teams_workflow_url, secrets.webhook_signing_secret) == (TEAMS, signing)
    monkeypatch.delenv("WEBHOOK_SIGNING_SECRET")
    with pytest.raises(SecretsError, match="WEBHOOK_SIGNING_SECRET is required when WEBHOOK_URLS is set"):
        store().notification_secrets(webhooks=True)
