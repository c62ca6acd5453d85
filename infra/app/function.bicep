// The function app (nightly snapshot timer + HTTP lookup API) on a Flex Consumption (FC1) plan:
// Linux, Python 3.11, running as the user-assigned identity, with its package pulled from a container of
// the host storage account with that identity. No keys anywhere: storage, Key Vault and Application
// Insights are all reached with the identity.
// Cost at rest: none. Flex Consumption scales to zero and bills GB-seconds and executions only while
// code runs (no always-ready instances are configured); a monthly free grant covers a nightly job.
//
// App settings (siteConfig.appSettings below): exactly what shared/settings.py marks `deployed=True`,
// plus the platform settings of the identity-based AzureWebJobsStorage connection and of Application
// Insights; tests/project/test_infra_settings.py checks this list against the code. Flex Consumption
// rejects or ignores FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE,
// WEBSITE_CONTENT*, SCM_DO_BUILD_DURING_DEPLOYMENT and WEBSITE_TIME_ZONE: runtime and version live in
// functionAppConfig, and the schedule is UTC.

param name string
param planName string
param location string
param tags object
param identityName string
param hostStorageAccountName string
param deploymentContainerName string
param snapshotStorageAccountName string
param snapshotContainerName string
param snapshotEventsQueueName string
param snapshotSchedule string
param functionTimeout string
param webhookUrls string
param teamsQuietNights bool
param keyVaultName string
param applicationInsightsName string

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource snapshotStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: snapshotStorageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy of Flex Consumption exists only in some regions and matters only with always-ready instances (billed around the clock); off for portability and cost. A missed night is caught by the stale-snapshot alert.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: The HTTP lookup API is called over the internet and Flex Consumption has no private endpoint without a VNet; callers present a function key, HTTPS only.
  // checkov:skip=CKV_AZURE_17: Mutual TLS would break ordinary HTTPS callers of the lookup API; callers present a function key instead.
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no fixed instance pool: it scales from zero per function up to maximumInstanceCount; a minimum would need always-ready instances, billed around the clock.
  // checkov:skip=CKV_AZURE_213: Platform health check replaces unhealthy instances of a fixed pool, which Flex Consumption does not have; data freshness is watched by the stale-snapshot alert instead.
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // The complete list of app settings: every provision replaces the whole set with this one.
      appSettings: [
        // Read by the code (shared/settings.py, deployed=True).
        {
          name: 'SNAPSHOT_SCHEDULE'
          value: snapshotSchedule
        }
        {
          name: 'AzureFunctionsJobHost__functionTimeout'
          value: functionTimeout
        }
        {
          name: 'KEY_VAULT_URL'
          value: vault.properties.vaultUri
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identity.properties.clientId
        }
        {
          name: 'SNAPSHOT_STORAGE_ACCOUNT_URL'
          value: snapshotStorage.properties.primaryEndpoints.blob
        }
        {
          name: 'SNAPSHOT_CONTAINER'
          value: snapshotContainerName
        }
        {
          name: 'SNAPSHOT_EVENTS_QUEUE'
          value: snapshotEventsQueueName
        }
        {
          name: 'SNAPSHOT_QUEUE_ACCOUNT_URL'
          value: snapshotStorage.properties.primaryEndpoints.queue
        }
        // Notifications (shared/notify): the Teams workflow URL and the webhook signing secret are Key Vault
        // secrets (teams-workflow-url, webhook-signing-secret), never app settings.
        {
          name: 'WEBHOOK_URLS'
          value: webhookUrls
        }
        {
          name: 'TEAMS_QUIET_NIGHTS'
          value: teamsQuietNights ? 'true' : 'false'
        }
        {
          // A snapshot without a usable index is loaded whole (about 2.2 times its JSON): an eighth of
          // the instance memory keeps that within the half the Python worker may use (docs/settings.md).
          name: 'API_WHOLE_LOAD_MAX_MB'
          value: string(instanceMemoryMB / 8)
        }
        {
          // The default host name of an app created without a unique-hostname scope; a reference to
          // site.properties.defaultHostName here would make the site depend on itself.
          name: 'API_PUBLIC_URL'
          value: 'https://${name}.azurewebsites.net'
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: hostStorage.properties.primaryEndpoints.blob
        }
        // Platform: the host's identity-based storage connection.
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identity.properties.clientId
        }
        // Platform: Application Insights with Entra ID ingestion (local auth is off on the component).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing passwords: azd and the portal deploy with Entra ID tokens.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
