"""What can be proved about infra/'s hardening without Azure or a Bicep compiler: the hardening asked for is
written down (checkov has no checks for most of it), the alerts watch the events the code logs, and the
scanner fails loudly on what it cannot read."""

from __future__ import annotations

import re

import pytest

from tests.support.bicep import ROOT, BicepScanError, Resource, _Bicep, _string, all_bicep, bicep

# --------------------------------------------------------------------------------------------------------
# Hardening the issue asks for (checkov checks little of it for Bicep).


def _properties(file: str, symbol: str) -> dict[str, str]:
    return bicep(file).resource(symbol).body.child("properties").keys()


def test_function_app_is_flex_consumption_python_311_with_the_user_assigned_identity():
    function = bicep("app/function.bicep")
    plan = function.resource("plan").body
    assert plan.child("sku").keys() == {"name": "'FC1'", "tier": "'FlexConsumption'"}
    site = function.resource("site").body
    assert site.child("identity").keys()["type"] == "'UserAssigned'"
    properties = site.child("properties")
    assert properties.keys()["httpsOnly"] == "true"
    config = properties.child("functionAppConfig")
    assert config.child("runtime").keys() == {"name": "'python'", "version": "'3.11'"}
    storage = config.child("deployment").child("storage")
    assert storage.child("authentication").keys()["type"] == "'UserAssignedIdentity'"
    assert properties.child("siteConfig").keys()["minTlsVersion"] == "'1.2'"


def test_storage_accounts_are_hardened():
    account = _properties("app/storage.bicep", "account")
    assert account["allowSharedKeyAccess"] == "false"
    assert account["allowBlobPublicAccess"] == "false"
    assert account["supportsHttpsTrafficOnly"] == "true"
    assert account["minimumTlsVersion"] == "'TLS1_2'"
    blob = bicep("app/storage.bicep").resource("blobService").body.child("properties")
    assert blob.child("deleteRetentionPolicy").keys()["enabled"] == "true"
    lifecycle = bicep("app/storage.bicep").resource("lifecycle")
    assert lifecycle.condition == "lifecycleEnabled"
    assert re.search(
        r"tierToCool:\s*\{\s*daysAfterModificationGreaterThan: coolAfterDays", lifecycle.body.source
    )
    assert re.search(
        r"delete:\s*\{\s*daysAfterModificationGreaterThan: deleteAfterDays", lifecycle.body.source
    )
    from shared.storage.layout import LATEST, PREFIX

    snapshot = bicep("main.bicep").modules
    params = next(m for m in snapshot if m.symbol == "snapshotStorage").body.child("params").keys()
    assert params["lifecycleEnabled"] == "true"
    # Snapshots age out; latest.json (outside the prefix) never does.
    assert _string(params["lifecyclePrefix"]) == "${snapshotContainerName}/" + PREFIX
    assert not LATEST.startswith(PREFIX)


def test_key_vault_is_rbac_only_with_purge_protection():
    vault = _properties("app/keyvault.bicep", "vault")
    assert vault["enableRbacAuthorization"] == "true"
    assert vault["enableSoftDelete"] == "true"
    assert vault["enablePurgeProtection"] == "true"
    # The template never writes a secret: it would overwrite the live refresh token on every provision.
    for file in all_bicep():
        assert not [
            r for r in file.resources if r.type == "Microsoft.KeyVault/vaults/secrets" and not r.existing
        ]


def test_telemetry_uses_entra_id_only():
    assert _properties("app/monitoring.bicep", "applicationInsights")["DisableLocalAuth"] == "true"
    workspace = bicep("app/monitoring.bicep").resource("workspace").body.child("properties")
    assert workspace.child("features").keys()["disableLocalAuth"] == "true"


def _alert_query(rule: Resource) -> str:
    (criterion,) = rule.body.child("properties").child("criteria").child("allOf").items()
    return _string(criterion.keys()["query"])


def test_alerts_watch_the_events_the_code_logs():
    alerts = bicep("app/alerts.bicep")
    rules = {r.symbol: r for r in alerts.resources if r.type == "Microsoft.Insights/scheduledQueryRules"}
    assert set(rules) == {"runFailed", "snapshotStale"}
    failed = _alert_query(rules["runFailed"])
    stale = _alert_query(rules["snapshotStale"])
    from shared import events

    watched = re.findall(r'message startswith "([\w.]+)"', failed + stale)
    assert watched == [
        events.SNAPSHOT_FAILED,
        events.REFRESH_TOKEN_NOT_SAVED,
        events.SNAPSHOT_EVENTS_PENDING,
        events.SNAPSHOT_EVENTS_SET_ASIDE,
        events.NOTIFY_GIVEN_UP,
        events.SNAPSHOT_SUMMARY,
    ]
    # The code logs these names through the same constants (tests/e2e/job/test_snapshot_job.py sees them
    # logged).
    assert set(watched) == events.ALERTED
    assert 'requests | where name == "${jobFunctionName}" and success == false' in failed
    assert "timestamp > ago(${staleAfterHours}h)" in stale
    function_app = (ROOT / "function_app.py").read_text()
    job_function = _string(bicep("main.bicep").params["jobFunctionName"].default or "")
    assert re.search(rf"^def {job_function}\(", function_app, re.M), f"function_app.py has no {job_function}"


# The writable properties of Microsoft.Insights/scheduledQueryRules in its GA API version 2023-12-01, from
# Azure/azure-rest-api-specs specification/monitor/resource-manager/Microsoft.Insights/stable/2023-12-01/
# scheduledQueryRule_API.json (ScheduledQueryRuleResource, ScheduledQueryRuleProperties, Actions, Condition;
# read-only ones left out). A property used in alerts.bicep must be one of these.
ALERT_RULE_API_VERSION = "2023-12-01"
ALERT_RULE_KEYS = {"name", "location", "tags", "kind", "identity", "properties"}
ALERT_RULE_PROPERTIES = {
    "description", "displayName", "severity", "enabled", "scopes", "evaluationFrequency", "windowSize",
    "overrideQueryTimeRange", "targetResourceTypes", "criteria", "muteActionsDuration", "actions",
    "checkWorkspaceAlertsStorageConfigured", "skipQueryValidation", "autoMitigate",
    "ruleResolveConfiguration",
}  # fmt: skip
ALERT_RULE_ACTIONS = {"actionGroups", "customProperties", "actionProperties"}
ALERT_RULE_CONDITION = {
    "query", "timeAggregation", "metricMeasureColumn", "resourceIdColumn", "dimensions", "operator",
    "threshold", "failingPeriods", "metricName",
}  # fmt: skip


def test_alert_rules_use_the_ga_api_version_and_only_its_properties():
    rules = [
        r for r in bicep("app/alerts.bicep").resources if r.type == "Microsoft.Insights/scheduledQueryRules"
    ]
    assert len(rules) == 2
    for rule in rules:
        assert rule.api_version == ALERT_RULE_API_VERSION, f"{rule.symbol}: {rule.api_version} is not GA"
        assert set(rule.body.keys()) <= ALERT_RULE_KEYS, rule.symbol
        assert _string(rule.body.keys()["kind"]) == "LogAlert"
        properties = rule.body.child("properties")
        unknown = sorted(set(properties.keys()) - ALERT_RULE_PROPERTIES)
        assert not unknown, f"{rule.symbol}: not properties of {ALERT_RULE_API_VERSION}: {unknown}"
        assert set(properties.child("actions").keys()) <= ALERT_RULE_ACTIONS, rule.symbol
        for condition in properties.child("criteria").child("allOf").items():
            assert set(condition.keys()) <= ALERT_RULE_CONDITION, rule.symbol
            assert _string(condition.keys()["operator"]) in {"GreaterThan", "LessThan"}
            assert set(condition.child("failingPeriods").keys()) == {
                "numberOfEvaluationPeriods",
                "minFailingPeriodsToAlert",
            }
    # Nothing in infra/ stays on a preview version of the alert rules.
    for file in all_bicep():
        versions = set(re.findall(r"scheduledQueryRules@([\w-]+)'", file.code))
        assert versions <= {ALERT_RULE_API_VERSION}, f"{file.path.name}: {sorted(versions)}"


@pytest.mark.parametrize(
    "text",
    [
        "x: 'a''",  # unterminated string
        "x: '${f('y')'",  # unterminated interpolation
        "x: {\n",  # unclosed object
    ],
)
def test_the_scanner_fails_loudly(tmp_path, text):
    path = tmp_path / "bad.bicep"
    path.write_text(f"resource r 'T@1' = {{\n  {text}\n}}\n")
    with pytest.raises(BicepScanError):
        _Bicep(path).resources  # noqa: B018
