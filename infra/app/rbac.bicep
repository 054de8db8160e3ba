// Role assignments, each on the narrowest scope that works, one resource per assignment so that
// scripts/parse_bicep.py can hold each one to the role table of infra/README.md (a role broader there than here,
// or here than there, fails `make check-infra`):
//   the app identity      storage (host + tables), the two rated-ingest queues, Application Insights, the vault
//                         (read) and, once it exists, the refresh-token secret (get and set, a custom role);
//   the deployment        the package container of the package account: the platform writes and reads the
//   identity              deployment package with it, and the app identity cannot write the package;
//   the deployer          only with principalDataRoles true (a development environment): tables and vault secrets.
// Every assignment is named guid(scope, principal, role): re-provisioning is idempotent.

@description('Required. Name of the storage account of the host, the usage tables and the rated-ingest queues.')
param storageAccountName string

@description('Required. Name of the rated-ingest queue of that account.')
param ratedIngestQueueName string

@description('Required. Name of its poison queue.')
param ratedIngestPoisonQueueName string

@description('Required. Name of the storage account holding the deployment package.')
param packageStorageAccountName string

@description('Required. Name of the blob container holding the deployment package.')
param deploymentContainerName string

@description('Required. Name of the Application Insights component the metrics role is scoped to.')
param applicationInsightsName string

@description('Required. Name of the key vault the secrets role is scoped to.')
param keyVaultName string

@description('Required. Name of the refresh-token secret the app identity may write.')
param refreshTokenSecretName string

@description('Optional. Whether the app identity gets the refresh-token writer role on the refresh-token secret. The secret must exist (the consent command creates it): a role assignment cannot be scoped to a missing resource.')
param grantRefreshTokenWrite bool = false

@description('Optional. Whether to write the refresh-token writer role definition (needs Owner or User Access Administrator; the CI principal passes false and only references it).')
param manageRoleDefinitions bool = true

@description('Required. Principal (object) id of the user-assigned identity of the function app.')
param appPrincipalId string

@description('Required. Principal (object) id of the user-assigned identity that writes and reads the deployment package.')
param deploymentPrincipalId string

@description('Optional. Object id of a developer that also gets data roles for local tools. Empty assigns nothing.')
param userPrincipalId string = ''

@description('Optional. Type of userPrincipalId: User for a developer, Group for a team.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

// Built-in role definition ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var storageBlobDataOwner = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
var storageBlobDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
var storageQueueDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
var storageTableDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
var monitoringMetricsPublisher = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
var keyVaultSecretsOfficer = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
var keyVaultSecretsUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')

// The custom role: read and write a secret's value, nothing else (Key Vault Secrets Officer could also delete and
// purge it). Its id is derived from the resource group, so every deployment into it names the same role; its name
// carries the group because role names are unique in the tenant.
var refreshTokenWriterRoleName = guid(resourceGroup().id, 'partner-center-refresh-token-writer')
var refreshTokenWriter = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', refreshTokenWriterRoleName)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource ratedIngestQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: ratedIngestQueueName
}

resource ratedIngestPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: ratedIngestPoisonQueueName
}

resource packageStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: packageStorageAccountName
}

resource packageBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: packageStorage
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: packageBlobService
  name: deploymentContainerName
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

resource refreshTokenWriterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (manageRoleDefinitions) {
  name: refreshTokenWriterRoleName
  properties: {
    roleName: 'Partner Center refresh token writer (${resourceGroup().name})'
    description: 'Reads and writes the value of the secrets it is assigned on: the function app stores each rotated Partner Center refresh token as a new version. Cannot delete, purge or list.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/secrets/getSecret/action'
          'Microsoft.KeyVault/vaults/secrets/setSecret/action'
        ]
        notDataActions: []
      }
    ]
  }
}

// Storage Blob Data Owner on the host's account: Microsoft's requirement for an identity-based AzureWebJobsStorage
// (the host's leases, timer checkpoints and keys). The package lives in another account.
resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: storageBlobDataOwner
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The usage tables: the app creates them (TABLE_PREFIX + name), so the role is on the account.
resource appTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: storageTableDataContributor
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The rated-ingest fan-out: the app sends one message per export blob and its queue trigger reads, deletes and
// moves to the poison queue. Queue data roles apply at queue scope, so each queue gets its own assignment.
resource appRatedIngestQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(ratedIngestQueue.id, appPrincipalId, storageQueueDataContributor)
  scope: ratedIngestQueue
  properties: {
    roleDefinitionId: storageQueueDataContributor
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appRatedIngestPoisonQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(ratedIngestPoisonQueue.id, appPrincipalId, storageQueueDataContributor)
  scope: ratedIngestPoisonQueue
  properties: {
    roleDefinitionId: storageQueueDataContributor
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

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

// Write, on the refresh-token secret alone: the app stores every rotated token as a new version and can change
// nothing else in the vault. Added by the provision that follows the first consent (docs/deploy.md); until then a
// rotated token stays in memory and the run fails loudly (RefreshTokenNotSaved). Once made, a later provision
// with grantRefreshTokenWrite false leaves it in place (incremental deployment).
resource appRefreshTokenWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantRefreshTokenWrite) {
  name: guid(refreshTokenSecret.id, appPrincipalId, refreshTokenWriter)
  scope: refreshTokenSecret
  properties: {
    roleDefinitionId: refreshTokenWriter
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    refreshTokenWriterRole
  ]
}

// The deployment package: the platform uploads it (azd's publish call) and loads it on every cold start with
// this identity, on this container only.
resource deploymentPackageWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(packageContainer.id, deploymentPrincipalId, storageBlobDataContributor)
  scope: packageContainer
  properties: {
    roleDefinitionId: storageBlobDataContributor
    principalId: deploymentPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// A developer's local tools in a development environment (principalDataRoles true): grants and run records in
// the tables, secrets in the vault. The runbook instead grants the deployer each role for the step that needs it.
resource userTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(storage.id, userPrincipalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: storageTableDataContributor
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: keyVaultSecretsOfficer
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

output refreshTokenWriterRoleId string = refreshTokenWriterRoleName
