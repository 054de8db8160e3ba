// Role assignments of the function app's user-assigned identity and, optionally, of the
// developer who runs `azd provision` (so local tools can read the tables and seed secrets).
// Every assignment is named guid(scope, principal, role): re-provisioning is idempotent.

@description('Required. Name of the storage account the roles are scoped to.')
param storageAccountName string

@description('Required. Name of the Application Insights component the metrics role is scoped to.')
param applicationInsightsName string

@description('Required. Name of the key vault the secrets role is scoped to.')
param keyVaultName string

@description('Required. Name of the refresh-token secret the app identity may write.')
param refreshTokenSecretName string

@description('Optional. Whether the app identity gets Key Vault Secrets Officer on the refresh-token secret. The secret must exist (the consent command creates it): a role assignment cannot be scoped to a missing resource.')
param grantRefreshTokenWrite bool = false

@description('Required. Principal (object) id of the user-assigned identity of the function app.')
param appPrincipalId string

@description('Optional. Object id of a developer or pipeline principal that also gets the data roles. Empty assigns nothing.')
param userPrincipalId string = ''

@description('Optional. Type of userPrincipalId: User for a developer, ServicePrincipal for a pipeline identity, Group for a team.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

// Built-in role definition ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var storageBlobDataOwner = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
var storageQueueDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
var storageTableDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
var monitoringMetricsPublisher = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
var keyVaultSecretsOfficer = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
var keyVaultSecretsUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')

// Blob Data Owner: the host's leases and timer checkpoints, and the Flex deployment package.
// Queue Data Contributor: the host's internal queues. Table Data Contributor: the usage tables.
var storageRoles = [
  storageBlobDataOwner
  storageQueueDataContributor
  storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Only referenced, never deployed: the consent command creates it, the app adds its versions.
resource refreshTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: refreshTokenSecretName
}

resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: {
  name: guid(storage.id, appPrincipalId, role)
  scope: storage
  properties: {
    roleDefinitionId: role
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// Application Insights accepts Entra ID-authenticated telemetry only from this role.
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: monitoringMetricsPublisher
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Read: the Key Vault references (client secret, refresh token) and the app's own load of the token.
resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: keyVaultSecretsUser
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Write, on the refresh-token secret alone: the app stores every rotated token as a new version and can
// change nothing else in the vault. Added by the provision that follows the first consent (docs/deploy.md);
// until then a rotated token stays in memory and the run fails loudly (RefreshTokenNotSaved). Once made,
// a later provision with grantRefreshTokenWrite false leaves it in place (incremental deployment).
resource appRefreshTokenWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantRefreshTokenWrite) {
  name: guid(refreshTokenSecret.id, appPrincipalId, keyVaultSecretsOfficer)
  scope: refreshTokenSecret
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource userStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in storageRoles: if (!empty(userPrincipalId)) {
  name: guid(storage.id, userPrincipalId, role)
  scope: storage
  properties: {
    roleDefinitionId: role
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}]

// Lets the developer seed or inspect the secrets (`az keyvault secret set`): an RBAC vault grants
// no data access to subscription owners by default.
resource userSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
