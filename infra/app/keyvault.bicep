// The vault holding the Partner Center app credentials (partner-center-tenant-id, -client-id,
// -client-secret and, for App+User, -refresh-token, which the job rewrites after each token exchange).
// Secrets are seeded by a person after `azd up` (docs/operations.md), never by this template: a template that set
// them would overwrite the live refresh token on every `azd provision`.
// Access is Azure RBAC only (no access policies; role assignments in rbac.bicep); soft delete with purge
// protection means a deleted vault or secret can be recovered for softDeleteRetentionInDays and cannot
// be purged sooner, by anyone. Audit events (who read or wrote which secret) go to Log Analytics.
// Cost at rest: none (Standard tier bills per 10k operations; the app makes a handful per night).

param name string
param location string
param tags object

@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int

param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Flex Consumption without VNet integration calls the vault from unpredictable outbound IPs and is not a trusted service, so a default-deny firewall would lock the app out. Entra ID + RBAC on each secret guard it.
  // checkov:skip=CKV_AZURE_189: Same reason: public network access stays on until the app gets VNet integration and a private endpoint (not on by default: they cost a VNet, an endpoint and a DNS zone).
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource auditLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
