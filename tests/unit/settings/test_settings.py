"""Settings: one catalogue, validated together, documented in docs/settings.md, secret values never echoed."""

import re

import pytest

from shared.hosts import is_known_authority, is_loopback
from shared.settings import SETTINGS, Settings, SettingsError
from tests.support.paths import REPO
from tests.support.settings import MINIMAL

ROOT = REPO


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


def test_the_settings_page_documents_every_setting_and_the_template_has_the_schedule():
    page = (ROOT / "docs" / "settings.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in page]
    assert not missing, f"docs/settings.md does not document {missing}"
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


# -- the run's deadline follows the host's timeout --------------------------------------------------------
@pytest.mark.parametrize(
    ("timeout", "deadline"),
    [
        (None, 1500),  # host.json: 00:30:00, less 5 minutes
        ("00:30:00", 1500),
        ("01:00:00", 3240),  # past 50 minutes the margin is 10 %
        ("02:00:00", 6480),
        ("00:10:00", 300),
        ("00:05:00", 150),  # the margin is never more than half the timeout
        ("00:00:04", 2),
        ("1.00:00:00", 77760),  # d.hh:mm:ss
        ("-1", 86400),  # no timeout: the longest deadline allowed
    ],
)
def test_the_deadline_defaults_to_the_function_timeout_less_a_margin(timeout, deadline):
    env = dict(MINIMAL)
    if timeout is not None:
        env["AzureFunctionsJobHost__functionTimeout"] = timeout
    for api in (False, True):  # the API's cache window reads it too
        settings = Settings.from_env(env, api=api)
        assert settings.run_deadline_seconds == deadline


def test_the_function_timeout_comes_from_host_json_unless_the_app_setting_overrides_it(tmp_path):
    import json

    host = json.loads((ROOT / "host.json").read_text())
    assert host["functionTimeout"] == "00:30:00"
    other = tmp_path / "host.json"
    other.write_text(json.dumps({**host, "functionTimeout": "00:20:00"}))
    assert Settings.from_env(MINIMAL, host_json=other).run_deadline_seconds == 900
    assert Settings.from_env(MINIMAL, host_json=other).function_timeout_seconds == 1200
    overridden = {**MINIMAL, "AzureFunctionsJobHost__functionTimeout": "00:40:00"}
    assert Settings.from_env(overridden, host_json=other).function_timeout_seconds == 2400
    other.write_text(json.dumps({"version": "2.0"}))  # no functionTimeout: Flex Consumption's 30 minutes
    assert Settings.from_env(MINIMAL, host_json=other).run_deadline_seconds == 1500
    assert Settings.from_env(MINIMAL, host_json=tmp_path / "missing.json").run_deadline_seconds == 1500
    other.write_text(json.dumps({"version": "2.0", "functionTimeout": None}))  # null: no timeout
    assert Settings.from_env(MINIMAL, host_json=other).function_timeout_seconds is None
    assert Settings.from_env(MINIMAL, host_json=other).run_deadline_seconds == 86400
    # An explicit deadline wins, but only below the timeout: past it the host would stop the run first.
    assert Settings.from_env({**MINIMAL, "SNAPSHOT_RUN_DEADLINE_SECONDS": "600"}).run_deadline_seconds == 600
    with pytest.raises(SettingsError, match=r"SNAPSHOT_RUN_DEADLINE_SECONDS .* less than the function"):
        Settings.from_env({**MINIMAL, "SNAPSHOT_RUN_DEADLINE_SECONDS": "1800"})
    # The API reads the deadline only for its cache window: a job-only mistake never takes it down.
    assert (
        Settings.from_env({**MINIMAL, "SNAPSHOT_RUN_DEADLINE_SECONDS": "1800"}, api=True).run_deadline_seconds
        == 1800
    )


@pytest.mark.parametrize("value", ["soon", "30", "00:61:00", "24:00:00", "0:00:00", "00:00:00", "-2"])
def test_a_function_timeout_that_is_not_a_timespan_is_named(value):
    with pytest.raises(SettingsError, match="AzureFunctionsJobHost__functionTimeout"):
        Settings.from_env({**MINIMAL, "AzureFunctionsJobHost__functionTimeout": value})
