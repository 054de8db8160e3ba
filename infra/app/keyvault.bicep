// Key Vault holding the Partner Center app secret and refresh token. Access is Azure RBAC only
// (no access policies); rbac.bicep gives the function app's identity Key Vault Secrets User on the
// vault and Key Vault Secrets Officer on the refresh-token secret alone (it writes each rotated token
// back as a new version).
//
// No secret is created here, on purpose: ARM writes a new version on every deployment of a secret
// resource, so a template that sets the refresh token would put a stale one back over the token the
// app has rotated since (and azd would keep the value in .azure/<env>/.env). The consent command
// (tools/consent.py) writes both secrets straight to the vault; see docs/deploy.md.

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

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
