"""Settings: one catalogue, validated together, documented in README, secret values never echoed."""

from pathlib import Path

import pytest

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
