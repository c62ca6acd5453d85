"""What can be proved about infra/'s app settings without Azure or a Bicep compiler: they match the
code's settings catalogue (shared.settings.SETTINGS) both ways, and none of the settings Flex Consumption
forbids is set."""

from __future__ import annotations

import json
import re

from shared.settings import SETTINGS
from tests.support.bicep import INFRA, ROOT, _string, all_bicep, bicep

# Set by infra/ for the platform rather than read by our code (shared/settings.py).
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

# Flex Consumption rejects or ignores these (runtime and version live in functionAppConfig; UTC only).
FLEX_FORBIDDEN_SETTINGS = (
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTOVERVNET",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_TIME_ZONE",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "AzureWebJobsStorage__accountName",  # fine elsewhere, but we use blobServiceUri only
)

FLEX_FORBIDDEN_PREFIXES = ("WEBSITE_CONTENT",)


# --------------------------------------------------------------------------------------------------------
# App settings vs the code's settings catalogue.


def _app_settings() -> dict[str, str]:
    """name -> value expression of every app setting the function app gets."""
    function = bicep("app/function.bicep")
    sites = [r for r in function.resources if r.type == "Microsoft.Web/sites" and not r.existing]
    assert len(sites) == 1, "expected exactly one function app"
    entries = sites[0].body.child("properties").child("siteConfig").child("appSettings").items()
    settings: dict[str, str] = {}
    for entry in entries:
        keys = entry.keys()
        assert set(keys) == {"name", "value"}, f"app setting entry with keys {sorted(keys)}"
        name = _string(keys["name"])
        assert name not in settings, f"app setting {name} is set twice"
        settings[name] = keys["value"]
    return settings


def test_app_settings_are_set_in_one_place_only():
    for file in all_bicep():
        assert not [r for r in file.resources if r.type == "Microsoft.Web/sites/config"], (
            f"{file.path.name}: app settings must stay in siteConfig.appSettings of function.bicep, "
            "where this test reads them (a sites/config resource would also replace them)"
        )
        count = len(re.findall(r"\bappSettings\s*:", file.masked))
        assert count == (1 if file.path.name == "function.bicep" else 0), (
            f"{file.path.name}: appSettings x{count}"
        )


def test_every_deployed_setting_has_an_app_setting():
    settings = _app_settings()
    missing = [s.name for s in SETTINGS if s.deployed and s.name not in settings]
    assert not missing, (
        f"settings the code requires in Azure but infra/app/function.bicep does not set: {missing}"
    )


def test_every_app_setting_is_read_by_the_code_or_is_a_platform_setting():
    known = {s.name for s in SETTINGS} | PLATFORM_SETTINGS
    unknown = sorted(set(_app_settings()) - known)
    assert not unknown, (
        f"app settings no code reads (not in shared/settings.py SETTINGS nor PLATFORM_SETTINGS): {unknown}"
    )


def test_no_setting_flex_consumption_forbids():
    names = set(_app_settings())
    forbidden = sorted(
        n for n in names if n in FLEX_FORBIDDEN_SETTINGS or n.startswith(FLEX_FORBIDDEN_PREFIXES)
    )
    assert not forbidden, f"Flex Consumption forbids: {forbidden}"
    for file in all_bicep():
        for name in FLEX_FORBIDDEN_SETTINGS:
            assert not re.search(rf"\b{name}\b", file.code), f"{file.path.name} sets {name}"


def test_no_secret_setting_is_deployed_as_plain_app_setting():
    secret = {s.name for s in SETTINGS if s.secret}
    assert not secret & set(_app_settings()), "secrets come from Key Vault, never from app settings"


def test_settings_defaults_agree_with_the_code():
    defaults = {s.name: s.default for s in SETTINGS}
    main_params = bicep("main.bicep").params
    assert _string(main_params["snapshotSchedule"].default or "") == defaults["SNAPSHOT_SCHEDULE"]
    assert _string(main_params["snapshotContainerName"].default or "") == defaults["SNAPSHOT_CONTAINER"]
    azd = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert azd["snapshotSchedule"]["value"] == "${SNAPSHOT_SCHEDULE=" + defaults["SNAPSHOT_SCHEDULE"] + "}"
    settings = _app_settings()
    assert settings["SNAPSHOT_SCHEDULE"] == "snapshotSchedule"
    assert settings["SNAPSHOT_CONTAINER"] == "snapshotContainerName"


def test_the_function_timeout_is_a_parameter_set_as_an_app_setting():
    """The run's deadline follows the host's timeout (shared/settings.py), so infra sets it in one place."""
    host = json.loads((ROOT / "host.json").read_text())
    main = bicep("main.bicep")
    assert _string(main.params["functionTimeout"].default or "") == host["functionTimeout"]
    function = next(m for m in main.modules if m.symbol == "functionApp")
    assert function.body.child("params").keys()["functionTimeout"] == "functionTimeout"
    assert _app_settings()["AzureFunctionsJobHost__functionTimeout"] == "functionTimeout"
    azd = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert azd["functionTimeout"]["value"] == "${FUNCTION_TIMEOUT=" + host["functionTimeout"] + "}"


def test_identity_settings_name_the_user_assigned_identity():
    settings = _app_settings()
    client_id = "identity.properties.clientId"
    assert settings["AZURE_CLIENT_ID"] == client_id
    assert settings["AzureWebJobsStorage__clientId"] == client_id
    assert _string(settings["AzureWebJobsStorage__credential"]) == "managedidentity"
    assert _string(settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]) == (
        "ClientId=${" + client_id + "};Authorization=AAD"
    )


def test_the_instance_memory_default_follows_the_sizing_table():
    """infra deploys the instance memory that docs/operations.md advises for most partners, measured by the
    bench, and azd can change it."""
    section = (ROOT / "docs" / "operations.md").read_text().split("### Instance memory", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "**" in line]
    sizes = [int(re.search(r"\*\*([\d,]+)\*\*", row)[1].replace(",", "")) for row in rows]
    assert sizes == sorted(sizes) and set(sizes) <= {512, 2048, 4096}
    (advised,) = [size for size, row in zip(sizes, rows, strict=True) if "(the default)" in row]
    assert int(bicep("main.bicep").params["instanceMemoryMB"].default or "") == advised
    azd = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert azd["instanceMemoryMB"]["value"] == "${INSTANCE_MEMORY_MB=" + str(advised) + "}"
    assert all(re.search(r"\d MB at [\d,]+", row) for row in rows)  # each row says what was measured
