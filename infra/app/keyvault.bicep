// Key Vault holding the Partner Center app secret and refresh token. Access is Azure RBAC only
// (no access policies); the function app's identity gets Key Vault Secrets Officer in rbac.bicep
// because it writes each rotated refresh token back as a new secret version.

@description('Required. Name of the key vault (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region of the key vault.')
param location string

@description('Optional. Tags applied to the key vault.')
param tags object = {}

@description('Optional. Days a deleted vault or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Required. Secret name of the Partner Center application (client) secret.')
param clientSecretName string

@description('Required. Secret name of the Partner Center refresh token.')
param refreshTokenSecretName string

@description('Optional. Partner Center application secret. Empty leaves the secret as it is (or absent).')
@secure()
param clientSecretValue string = ''

@description('Optional. First Partner Center refresh token. Empty leaves the secret as it is (or absent).')
@secure()
param refreshTokenValue string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: A Flex Consumption app without VNet integration reaches the vault from shared outbound addresses that cannot be listed, so the firewall default is Allow; access still needs an Entra ID token with an RBAC data role.
  // checkov:skip=CKV_AZURE_189: Public network access stays on: the function app resolves its Key Vault references (the client secret, the refresh token) from Flex Consumption, which cannot resolve them against a network-restricted vault; access still needs an Entra ID token with an RBAC data role.
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
      defaultAction: 'Allow'
      bypass: 'AzureServices'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

// Secrets are written only when a value is passed. azd resends every parameter on each
// `azd provision`; writing the refresh token unconditionally would replace the token the app
// has rotated since with the stale first one (and the CI pipeline, which has no secret values,
// would blank it). With the condition, a provision without a value leaves the secret untouched.
resource clientSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(clientSecretValue)) {
  // checkov:skip=CKV_AZURE_114: False positive: contentType is set below; checkov reads a conditional resource one level too high.
  // checkov:skip=CKV_AZURE_41: The secret's lifetime is set where it is issued (the Entra ID app registration); an expiry here would only break the Key Vault reference before the real one.
  parent: vault
  name: clientSecretName
  properties: {
    value: clientSecretValue
    contentType: 'text/plain'
  }
}

resource refreshToken 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(refreshTokenValue)) {
  // checkov:skip=CKV_AZURE_114: False positive: contentType is set below; checkov reads a conditional resource one level too high.
  // checkov:skip=CKV_AZURE_41: The app replaces this secret with a new version at every token rotation; an expiry on the seeded version would break the Key Vault reference for no gain.
  parent: vault
  name: refreshTokenSecretName
  properties: {
    value: refreshTokenValue
    contentType: 'text/plain'
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
