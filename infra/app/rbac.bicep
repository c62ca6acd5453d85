// Every role assignment of the product, least privilege, in one place. The app's managed identity gets:
//   host storage account        Storage Blob Data Owner       the Functions host's identity-based
//                                                             AzureWebJobsStorage (timer leases, keys) and
//                                                             the Flex deployment package require it
//   snapshot container only     Storage Blob Data Contributor create/read/overwrite/list blobs, conditional
//                                                             writes: the job and the HTTP API, nothing more
//   events queue only           Storage Queue Data Message    send change events (CloudEvents) to that one
//                               Sender                        queue: no reading, no other queue
//   snapshot account            Storage Blob Delegator        (enableSnapshotSas) only the user delegation
//                                                             key; a SAS signed with it can never grant more
//                                                             than the identity holds, i.e. that container
//   Key Vault                   Key Vault Secrets User        read the Partner Center secrets
//   refresh-token secret only   Key Vault Secrets Officer     (enableRefreshTokenRotation) write the rotated
//                                                             token back; no other secret
//   Application Insights        Monitoring Metrics Publisher  identity-based ingestion (local auth is off)
// and the deployer (optional) gets Key Vault Secrets Officer on the vault to seed the secrets.
// Cost at rest: none.
//
// The ids below are Azure built-in role definition ids (the same in every tenant);
// tests/project/test_infra_roles.py checks each against the role name in its comment and checks the assignments against the table above.

param appPrincipalId string

@description('Object id of the deployer to make Key Vault Secrets Officer; empty: none.')
param deployerPrincipalId string

param hostStorageAccountName string
param snapshotStorageAccountName string
param snapshotContainerName string
param snapshotEventsQueueName string
param enableSnapshotSas bool
param keyVaultName string
param enableRefreshTokenRotation bool
param refreshTokenSecretName string
param applicationInsightsName string

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a' // Storage Blob Delegator
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a' // Storage Queue Data Message Sender
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // Key Vault Secrets Officer
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource snapshotStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: snapshotStorageAccountName
}

resource snapshotBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: snapshotStorage
  name: 'default'
}

resource snapshotContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: snapshotBlobService
  name: snapshotContainerName
}

resource snapshotQueueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: snapshotStorage
  name: 'default'
}

resource snapshotEventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: snapshotQueueService
  name: snapshotEventsQueueName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Must exist before enableRefreshTokenRotation is turned on: seed it first (docs/operations.md).
resource refreshTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: refreshTokenSecretName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource appHostStorageOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage (AzureWebJobsStorage) and Flex deployment package'
  }
}

resource appSnapshotContainerContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(snapshotContainer.id, appPrincipalId, roles.storageBlobDataContributor)
  scope: snapshotContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Write and read customer snapshots and latest.json'
  }
}

resource appEventsQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(snapshotEventsQueue.id, appPrincipalId, roles.storageQueueDataMessageSender)
  scope: snapshotEventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Send change events to the events queue (this queue only)'
  }
}

resource appSnapshotDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableSnapshotSas) {
  name: guid(snapshotStorage.id, appPrincipalId, roles.storageBlobDelegator)
  scope: snapshotStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDelegator)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'User delegation key for snapshot download SAS URLs'
  }
}

resource appVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Read the Partner Center credentials'
  }
}

resource appRefreshTokenOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableRefreshTokenRotation) {
  name: guid(refreshTokenSecret.id, appPrincipalId, roles.keyVaultSecretsOfficer)
  scope: refreshTokenSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Write back the rotated Partner Center refresh token (this secret only)'
  }
}

resource appTelemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Identity-based Application Insights ingestion'
  }
}

resource deployerVaultSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId // a person or a CI service principal: ARM looks its type up
    description: 'Deployer seeds and rotates the Partner Center secrets'
  }
}
