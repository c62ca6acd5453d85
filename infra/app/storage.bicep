// A hardened storage account, used twice by main.bicep: the Functions host storage (AzureWebJobsStorage,
// the Flex Consumption deployment package) and the snapshot storage (dated snapshots + latest.json).
// No keys: shared-key access is off, so every caller signs in with Entra ID (the app with its managed
// identity); no anonymous blob access; HTTPS only with TLS 1.2 at least. Blob and container soft delete
// let a deleted or overwritten blob be restored for softDeleteDays. On the snapshot account a lifecycle
// policy moves snapshots to Cool and later deletes them.
// Cost at rest: none for the account itself; stored GB (Hot, Cool after coolAfterDays), soft-deleted
// data until it expires, and per-10k transactions.

param name string
param location string
param tags object

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string

@description('Private blob containers to create.')
param containerNames array

@description('Storage queues to create (the snapshot account: change events).')
param queueNames array = []

@minValue(1)
@maxValue(365)
param softDeleteDays int

@description('Add the lifecycle policy below (snapshot account only).')
param lifecycleEnabled bool

@description('Blob name prefix the lifecycle policy applies to: "<container>/<folder>/".')
param lifecyclePrefix string = ''

@minValue(1)
param coolAfterDays int = 30

@minValue(2)
param deleteAfterDays int = 365

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches storage over its public endpoint from unpredictable outbound IPs; a default-deny firewall would lock the app out. Entra ID auth only (no shared keys) guards it.
  // checkov:skip=CKV_AZURE_59: Same reason: public network access is needed until the app gets VNet integration and private endpoints (not on by default: they cost a VNet, endpoints and DNS zones).
  // checkov:skip=CKV_AZURE_206: Default LRS works in every Flex region and costs least; the snapshot account's redundancy is the snapshotStorageSku parameter (ZRS/GRS/GZRS), the host account holds only rebuildable data.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    isLocalUserEnabled: false
    isSftpEnabled: false
    isHnsEnabled: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = if (!empty(queueNames)) {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

// Snapshots age by their (only) write; on the snapshot account the prefix is the container's snapshots/
// folder, so latest.json at the container root is never moved or deleted.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (lifecycleEnabled) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'snapshots-cool-then-delete'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                lifecyclePrefix
              ]
            }
            actions: {
              baseBlob: {
                tierToCool: {
                  daysAfterModificationGreaterThan: coolAfterDays
                }
                delete: {
                  daysAfterModificationGreaterThan: deleteAfterDays
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    containers
  ]
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
