// The user-assigned managed identity the function app runs as: Key Vault, both storage accounts and
// Application Insights ingestion all accept it, so the app holds no keys or connection strings.
// A user-assigned (not system-assigned) identity exists before the app does, so its role assignments
// are in place when the host first starts, and it survives re-creating the app.
// Cost at rest: none (managed identities are free).

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
