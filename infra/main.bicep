// Entry point of `azd provision` / `azd up`: one resource group holding everything the product needs.
//
// Subscription-scoped so azd can create the resource group itself. Every name derives from a resource
// token (uniqueString of subscription, environment name and region), so a clean clone needs nothing but
// an environment name and a region to get globally unique names.
//
// What it provisions (each module says what it costs at rest):
//   app/identity.bicep    user-assigned managed identity the app runs as
//   app/monitoring.bicep  Log Analytics workspace + Application Insights (local auth off)
//   app/storage.bicep     twice: host storage (Functions runtime + deployment package) and snapshot storage
//   app/keyvault.bicep    Key Vault (RBAC, soft delete, purge protection) for the Partner Center credentials
//   app/rbac.bicep        every role assignment, least privilege
//   app/function.bicep    Flex Consumption plan + the function app and its app settings
//   app/alerts.bicep      log alerts: a failed run, and no published snapshot for too long
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and seeds the resource token.')
param environmentName string

@minLength(1)
@description('Region of every resource; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
param location string

@description('Object id of whoever runs azd (azd fills AZURE_PRINCIPAL_ID); empty: no role for the deployer.')
param principalId string = ''

@description('Make the deployer Key Vault Secrets Officer on the vault, so they can seed the Partner Center secrets.')
param grantDeployerSecretsOfficer bool = true

@description('The job writes each rotated App+User refresh token back to Key Vault. Grants the app Secrets Officer on that one secret; seed the secret before turning this on.')
param enableRefreshTokenRotation bool = false

@description('Key Vault secret the job writes back when refresh-token rotation is on.')
param refreshTokenSecretName string = 'partner-center-refresh-token'

@description('Let the HTTP API mint user-delegation SAS URLs for large snapshot downloads (Storage Blob Delegator).')
param enableSnapshotSas bool = true

@description('NCRONTAB (six fields, seconds first, UTC) of the nightly snapshot; the app setting SNAPSHOT_SCHEDULE.')
param snapshotSchedule string = '0 0 2 * * *'

@description('Longest one invocation may run (hh:mm:ss; -1: no limit, which Flex Consumption allows): the app setting AzureFunctionsJobHost__functionTimeout, overriding host.json. The nightly run ends itself before it (SNAPSHOT_RUN_DEADLINE_SECONDS follows it); raise it for large partners (docs/operations.md).')
@minLength(2)
param functionTimeout string = '00:30:00'

@description('Blob container for snapshots and latest.json; the app setting SNAPSHOT_CONTAINER.')
@minLength(3)
@maxLength(63)
param snapshotContainerName string = 'customer-snapshots'

@description('Storage queue (snapshot account) for change events (CloudEvents); the app setting SNAPSHOT_EVENTS_QUEUE.')
@minLength(3)
@maxLength(63)
param snapshotEventsQueueName string = 'customer-changes'

@description('Endpoints each published run POSTs its change events to as signed CloudEvents batches, separated by commas or spaces; the app setting WEBHOOK_URLS (empty: no webhooks). Seed the Key Vault secret webhook-signing-secret first.')
param webhookUrls string = ''

@description('Also post a short Teams card after a run without changes; the app setting TEAMS_QUIET_NIGHTS. Cards go to the Key Vault secret teams-workflow-url, when it exists.')
param teamsQuietNights bool = false

@description('Snapshots move to the Cool tier this many days after they were written.')
@minValue(1)
param snapshotCoolAfterDays int = 30

@description('Snapshots are deleted this many days after they were written (Cool bills at least 30 days).')
@minValue(2)
param snapshotRetentionDays int = 365

@description('Redundancy of the snapshot storage account (LRS by default: available in every Flex region).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param snapshotStorageSku string = 'Standard_LRS'

@description('Days a deleted or overwritten blob (or container) can be restored.')
@minValue(1)
@maxValue(365)
param blobSoftDeleteDays int = 7

@description('Days a deleted vault or secret stays recoverable; purge protection blocks purging it sooner.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionDays int = 90

@description('Email address for alerts; empty: the alerts still fire (portal, Azure Monitor) but notify nobody.')
param alertEmail string = ''

@description('Alert when no run has logged a successful summary for this many hours.')
@minValue(2)
@maxValue(47)
param snapshotStaleAfterHours int = 26

@description('Name of the timer function (its failures show in the requests table under this name).')
param jobFunctionName string = 'snapshot_customers'

@description('Upper bound of Flex Consumption instances (caps cost if the HTTP API is flooded).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

// 512 MB holds the API's peak at up to a million customers, as measured by `make bench`; 2,048 beyond
// that. docs/operations.md "Instance memory" has the table (azd: INSTANCE_MEMORY_MB).
@description('Memory of one Flex Consumption instance: 512 up to a million customers (docs/operations.md).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

@description('Days Log Analytics keeps logs (30 days are included in the ingestion price).')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Daily ingestion cap of the Log Analytics workspace in GB (-1: none); bounds a runaway logging bill.')
param logDailyCapGb int = 1

// azd finds the function app to deploy to by this tag; it must match the service name in azure.yaml.
var serviceName = 'app'
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// Flex Consumption pulls the app package from this container of the host storage account.
var deploymentContainerName = 'app-package'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
    dailyCapGb: logDailyCapGb
  }
}

// Two accounts rather than one: the Functions host needs Storage Blob Data Owner on its whole storage
// account (leases, keys, deployment package), which on a shared account would also cover every snapshot.
// A separate snapshot account keeps the app's snapshot rights to one container (Data Contributor) and
// lets the lifecycle policy, soft delete and redundancy be chosen for the data alone. An idle storage
// account costs nothing; only stored GB and transactions are billed.
module hostStorage 'app/storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: 'Standard_LRS'
    containerNames: [
      deploymentContainerName
    ]
    softDeleteDays: blobSoftDeleteDays
    lifecycleEnabled: false
  }
}

module snapshotStorage 'app/storage.bicep' = {
  name: 'snapshot-storage'
  scope: rg
  params: {
    name: 'stsnap${resourceToken}'
    location: location
    tags: tags
    skuName: snapshotStorageSku
    containerNames: [
      snapshotContainerName
    ]
    queueNames: [
      snapshotEventsQueueName
    ]
    softDeleteDays: blobSoftDeleteDays
    lifecycleEnabled: true
    lifecyclePrefix: '${snapshotContainerName}/snapshots/' // shared/storage/layout.py PREFIX: not latest.json
    coolAfterDays: snapshotCoolAfterDays
    deleteAfterDays: snapshotRetentionDays
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionDays
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    deployerPrincipalId: grantDeployerSecretsOfficer ? principalId : ''
    hostStorageAccountName: hostStorage.outputs.name
    snapshotStorageAccountName: snapshotStorage.outputs.name
    snapshotContainerName: snapshotContainerName
    snapshotEventsQueueName: snapshotEventsQueueName
    enableSnapshotSas: enableSnapshotSas
    keyVaultName: keyVault.outputs.name
    enableRefreshTokenRotation: enableRefreshTokenRotation
    refreshTokenSecretName: refreshTokenSecretName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: union(tags, {
      'azd-service-name': serviceName
    })
    identityName: identity.outputs.name
    hostStorageAccountName: hostStorage.outputs.name
    deploymentContainerName: deploymentContainerName
    snapshotStorageAccountName: snapshotStorage.outputs.name
    snapshotContainerName: snapshotContainerName
    snapshotEventsQueueName: snapshotEventsQueueName
    snapshotSchedule: snapshotSchedule
    functionTimeout: functionTimeout
    webhookUrls: webhookUrls
    teamsQuietNights: teamsQuietNights
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  // The host reads its storage and the vault with the identity as soon as it starts: grant first.
  dependsOn: [
    rbac
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: resourceToken
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    alertEmail: alertEmail
    staleAfterHours: snapshotStaleAfterHours
    jobFunctionName: jobFunctionName
  }
}

// azd writes these into .azure/<env>/.env. The identity's client id is deliberately not exported as
// AZURE_CLIENT_ID: azure-identity on a laptop would then try to act as the managed identity.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.url
output AZURE_APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output SNAPSHOT_STORAGE_ACCOUNT_NAME string = snapshotStorage.outputs.name
output SNAPSHOT_STORAGE_ACCOUNT_URL string = snapshotStorage.outputs.blobEndpoint
output SNAPSHOT_CONTAINER string = snapshotContainerName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.workspaceName
