"""What can be proved about infra/'s roles without Azure or a Bicep compiler: role definition ids are the
built-in roles their comments name, and the role assignments are exactly the least-privilege table of
infra/app/rbac.bicep."""

from __future__ import annotations

import re

from tests.support.bicep import Block, Resource, _closing, _string, all_bicep, bicep

# Azure built-in role definitions (id -> name), the same in every tenant. Checked against Microsoft's
# "Azure built-in roles" reference; a role added to infra/ must be added here after the same check.
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "db58b8e5-c6ad-4a2a-8342-4190687cbf4a": "Storage Blob Delegator",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

# The least-privilege table (infra/app/rbac.bicep header): (scope symbol, role key, principal, condition).
EXPECTED_ROLE_ASSIGNMENTS = {
    ("hostStorage", "storageBlobDataOwner", "appPrincipalId", None),
    ("snapshotContainer", "storageBlobDataContributor", "appPrincipalId", None),
    ("snapshotStorage", "storageBlobDelegator", "appPrincipalId", "enableSnapshotSas"),
    ("snapshotEventsQueue", "storageQueueDataMessageSender", "appPrincipalId", None),
    ("vault", "keyVaultSecretsUser", "appPrincipalId", None),
    ("refreshTokenSecret", "keyVaultSecretsOfficer", "appPrincipalId", "enableRefreshTokenRotation"),
    ("applicationInsights", "monitoringMetricsPublisher", "appPrincipalId", None),
    ("vault", "keyVaultSecretsOfficer", "deployerPrincipalId", "!empty(deployerPrincipalId)"),
}

SCOPE_TYPES = {
    "hostStorage": "Microsoft.Storage/storageAccounts",
    "snapshotStorage": "Microsoft.Storage/storageAccounts",
    "snapshotContainer": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "snapshotEventsQueue": "Microsoft.Storage/storageAccounts/queueServices/queues",
    "vault": "Microsoft.KeyVault/vaults",
    "refreshTokenSecret": "Microsoft.KeyVault/vaults/secrets",
    "applicationInsights": "Microsoft.Insights/components",
}

GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


# --------------------------------------------------------------------------------------------------------
# Role definitions and role assignments.


def test_every_role_definition_id_is_the_built_in_role_its_comment_names():
    seen = 0
    for file in all_bicep():
        for number, line in enumerate(file.text.splitlines(), 1):
            for guid in re.findall(GUID, line):
                seen += 1
                where = f"{file.path.name}:{number}"
                comment = re.search(r"//\s*(.+?)\s*$", line)
                assert comment, f"{where}: role id {guid} without `// <role name>` comment"
                assert guid.lower() in BUILT_IN_ROLES, f"{where}: {guid} is not a known built-in role"
                name = BUILT_IN_ROLES[guid.lower()]
                assert comment.group(1) == name, f"{where}: {guid} is {name!r}, not {comment.group(1)!r}"
    assert seen, "no role definition ids found"


def _roles() -> dict[str, str]:
    rbac = bicep("app/rbac.bicep")
    match = re.search(r"^var\s+roles\s*=\s*\{", rbac.masked, re.M)
    assert match, "rbac.bicep declares its role ids in `var roles = {...}`"
    block = Block(rbac.text, rbac.masked, match.end() - 1, _closing(rbac.masked, match.end() - 1))
    return {key: _string(value) for key, value in block.keys().items()}


def _role_assignments() -> list[tuple[Resource, str, str, str]]:
    """(resource, scope symbol, role key, principal) of every role assignment."""
    rbac = bicep("app/rbac.bicep")
    found = []
    for resource in rbac.resources:
        if resource.type != "Microsoft.Authorization/roleAssignments":
            continue
        keys = resource.body.keys()
        properties = resource.body.child("properties").keys()
        role = re.fullmatch(
            r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', roles\.(\w+)\)",
            properties["roleDefinitionId"],
        )
        assert role, f"{resource.symbol}: roleDefinitionId must name one of `roles`"
        found.append((resource, keys["scope"], role.group(1), properties["principalId"]))
    return found


def test_role_assignments_are_the_least_privilege_table():
    actual = {(scope, role, principal, r.condition) for r, scope, role, principal in _role_assignments()}
    assert actual == EXPECTED_ROLE_ASSIGNMENTS, (
        f"unexpected: {sorted(actual - EXPECTED_ROLE_ASSIGNMENTS, key=str)}; "
        f"missing: {sorted(EXPECTED_ROLE_ASSIGNMENTS - actual, key=str)}"
    )


def test_role_assignments_live_in_rbac_bicep_only():
    for file in all_bicep():
        if file.path.name != "rbac.bicep":
            assert not [r for r in file.resources if r.type == "Microsoft.Authorization/roleAssignments"], (
                f"{file.path.name}: keep role assignments in app/rbac.bicep, where the tests read them"
            )


def test_role_assignment_details():
    roles = _roles()
    rbac = bicep("app/rbac.bicep")
    assert set(roles.values()) <= set(BUILT_IN_ROLES)
    for resource, scope, role, principal in _role_assignments():
        assert role in roles, f"{resource.symbol}: unknown role key {role}"
        scope_resource = rbac.resource(scope)
        assert scope_resource.existing, f"{resource.symbol}: scope"
        assert scope_resource.type == SCOPE_TYPES[scope], f"{resource.symbol}: scope"
        name = resource.body.keys()["name"]
        assert name == f"guid({scope}.id, {principal}, roles.{role})", f"{resource.symbol}: name {name}"
        properties = resource.body.child("properties").keys()
        if principal == "appPrincipalId":
            assert _string(properties["principalType"]) == "ServicePrincipal", resource.symbol
    # The write permission on the vault is for that one secret only.
    secret = rbac.resource("refreshTokenSecret").body.keys()
    assert secret["parent"] == "vault"
    assert secret["name"] == "refreshTokenSecretName"
    assert _string(bicep("main.bicep").params["refreshTokenSecretName"].default or "") == (
        "partner-center-refresh-token"
    )
    container = rbac.resource("snapshotContainer").body.keys()
    assert container["name"] == "snapshotContainerName"
    assert container["parent"] == "snapshotBlobService"
    # Sending change events: that one queue of the snapshot account, the one the app setting names.
    queue = rbac.resource("snapshotEventsQueue").body.keys()
    assert queue["name"] == "snapshotEventsQueueName"
    assert queue["parent"] == "snapshotQueueService"
    assert rbac.resource("snapshotQueueService").body.keys()["parent"] == "snapshotStorage"
