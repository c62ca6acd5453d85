"""Settings: one catalogue, validated together, documented in README, secret values never echoed."""

import re
from pathlib import Path

import pytest

from shared.hosts import is_known_authority, is_loopback
from shared.settings import SETTINGS, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {
    "KEY_VAULT_URL": "https://kv.vault.azure.net",
    "SNAPSHOT_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net",
}


def test_defaults_are_the_documented_ones():
    settings = Settings.from_env(MINIMAL)
    assert settings.page_size == 500
    assert settings.partner_center_api_url == "https://api.partnercenter.microsoft.com"
    assert settings.authority_host == "https://login.microsoftonline.com"
    assert settings.container == "customer-snapshots"
    assert settings.storage.account_url == "https://a.blob.core.windows.net"


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as failure:
        Settings.from_env({"PARTNER_CENTER_PAGE_SIZE": "9000", "SNAPSHOT_CONTAINER": "x"})
    message = str(failure.value)
    for name in ("PARTNER_CENTER_PAGE_SIZE", "SNAPSHOT_CONTAINER", "PARTNER_CENTER_CLIENT_SECRET", "storage"):
        assert name in message


def test_a_connection_string_never_shows_in_the_settings_repr():
    settings = Settings.from_env(
        {
            **MINIMAL,
            "SNAPSHOT_STORAGE_ACCOUNT_URL": "",
            "SNAPSHOT_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=s3cr3t",
        }
    )
    assert settings.storage.connection_string
    assert "s3cr3t" not in repr(settings)


def test_readme_documents_every_setting_and_the_template_has_the_schedule():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert not missing, f"README does not document {missing}"
    assert '"SNAPSHOT_SCHEDULE": "0 0 2 * * *"' in (ROOT / "local.settings.template.json").read_text()


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("PARTNER_CENTER_BACKOFF_SECONDS", "fast", "must be a number from 0 to 60, got 'fast'"),
        ("PARTNER_CENTER_TIMEOUT_SECONDS", "0", "must be a number from 0.1 to 600, got '0'"),
        ("SNAPSHOT_STORAGE_RETRIES", "2.5", "must be a whole number from 0 to 10, got '2.5'"),
        ("PARTNER_CENTER_AUTHORITY_HOST", "https://", "must be an https:// URL, got 'https://'"),
    ],
    ids=["number-not-a-number", "number-below-range", "integer-with-fraction", "url-without-host"],
)
def test_a_bad_value_is_named_with_what_is_allowed(name, value, problem):
    with pytest.raises(SettingsError, match=re.escape(f"{name} {problem}")):
        Settings.from_env({**MINIMAL, name: value})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://localhost:8443/", True),
        ("https://LOCALHOST/", True),
        ("https://127.0.0.1:1234/", True),
        ("https://127.9.9.9/", True),
        ("https://[::1]:443/", True),
        ("https://kv.vault.azure.net/", False),
        ("https://10.0.0.1/", False),
        ("https://localhost.example.com/", False),
        ("not a url", False),
    ],
    ids=[
        "localhost",
        "localhost-upper-case",
        "ipv4-loopback",
        "ipv4-loopback-range",
        "ipv6-loopback",
        "azure-host",
        "private-address",
        "localhost-as-a-label",
        "no-host",
    ],
)
def test_is_loopback(url, expected):
    assert is_loopback(url) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://login.microsoftonline.com/tenant", True),
        ("https://LOGIN.microsoftonline.us/tenant", True),
        ("https://127.0.0.1:9000/tenant", False),
        ("https://login.microsoftonline.com.evil.example/tenant", False),
    ],
    ids=["entra-id", "sovereign-cloud-upper-case", "stand-in", "look-alike"],
)
def test_is_known_authority(url, expected):
    assert is_known_authority(url) is expected
