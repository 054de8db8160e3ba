// Flex Consumption (FC1, Linux) plan and the Python function app. Everything the app reaches,
// it reaches as its user-assigned identity: no storage keys, no instrumentation key, and the
// Partner Center secrets arrive as Key Vault references resolved with that identity. The deployment
// package is written and read by the platform with a second identity that holds a role on the package
// container only; the app's code and the host use the first (AZURE_CLIENT_ID, the *__clientId settings).

@description('Required. Name of the function app.')
param name string

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Required. Azure region of the plan and the app (a region that offers Flex Consumption).')
param location string

@description('Optional. Tags applied to the plan and the app (the app also gets azd-service-name).')
param tags object = {}

@description('Required. Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Required. Client id of the user-assigned managed identity.')
param identityClientId string

@description('Required. Resource id of the user-assigned managed identity the platform writes and reads the deployment package with.')
param deploymentIdentityId string

@description('Required. Blob endpoint of the storage account, with its trailing slash.')
param blobEndpoint string

@description('Required. Queue endpoint of the storage account.')
param queueEndpoint string

@description('Required. Blob container of the storage account that holds the FOCUS dataset.')
param focusContainerName string

@description('Required. Table endpoint of the storage account (host storage and usage tables).')
param tableEndpoint string

@description('Required. Blob endpoint of the storage account holding the deployment package, with its trailing slash.')
param packageBlobEndpoint string

@description('Required. Blob container of that account that holds the deployment package.')
param deploymentContainerName string

@description('Required. Name of the Application Insights component the app reports to.')
param applicationInsightsName string

@description('Required. Name of the key vault holding the Partner Center secrets.')
param keyVaultName string

@description('Required. URI of that key vault.')
param keyVaultUri string

@description('Required. Secret name of the Partner Center application secret.')
param clientSecretName string

@description('Required. Secret name of the Partner Center refresh token.')
param refreshTokenSecretName string

@description('Optional. Application settings of the app itself (schedules, sync tuning, Partner Center ids).')
param appSettings object = {}

@description('Optional. Python version of the Functions runtime.')
@allowed([
  '3.10'
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Optional. Memory of one instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Upper bound of instances the app scales out to (Flex Consumption accepts 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Optional. Spread instances over availability zones (keeps at least two always-ready instances, billed).')
param zoneRedundant bool = false

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy is the parameter zoneRedundant. Off by default: on Flex Consumption it keeps at least two always-ready (billed) instances per function group, and this timer-driven sync catches up by itself after an outage.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: The serve_usage HTTP API is called by partner portals over the internet; every call needs a function key. Closing public access needs VNet integration and private endpoints, which this template does not deploy.
  // checkov:skip=CKV_AZURE_17: Callers authenticate with function keys; client certificates (mutual TLS) would add a certificate lifecycle for every portal without a matching threat.
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no minimum worker count (numberOfWorkers); instances scale from zero per function.
  // checkov:skip=CKV_AZURE_213: Flex Consumption does not support the platform health check (healthCheckPath); serve_usage exposes its own health endpoint (HEALTH_MAX_AGE_HOURS).
  // checkov:skip=CKV_AZURE_78: FTP does not exist on Flex Consumption, which rejects siteConfig.ftpsState (ARM 400, code 51021); basic publishing credentials are off below.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
      '${deploymentIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${packageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: deploymentIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Settings the templates fix: the platform and identity wiring, endpoints and Key Vault references
// (infra/app-settings.json lists them as "template"; operators set the others, in main.bicep).
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are deliberately absent: Flex Consumption
// takes the runtime from functionAppConfig.runtime and rejects those settings.
var identitySettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // Selects the user-assigned identity for azure-identity credentials (Key Vault write-back).
  AZURE_CLIENT_ID: identityClientId
  USAGE_STORAGE__credential: 'managedidentity'
  USAGE_STORAGE__clientId: identityClientId
  USAGE_STORAGE__tableServiceUri: tableEndpoint
  // The rated-ingest fan-out queue's connection (a queue trigger's "connection": "USAGE_QUEUE"), identity-based.
  USAGE_QUEUE__credential: 'managedidentity'
  USAGE_QUEUE__clientId: identityClientId
  USAGE_QUEUE__queueServiceUri: queueEndpoint
  // The FOCUS dataset (shared/focus): blobs of the same account, written with the same identity.
  USAGE_BLOB__clientId: identityClientId
  USAGE_BLOB__blobServiceUri: blobEndpoint
  FOCUS_CONTAINER: focusContainerName
  KEY_VAULT_URL: keyVaultUri
  PARTNER_CENTER_REFRESH_TOKEN_SECRET_NAME: refreshTokenSecretName
  // No secret version: the reference follows the newest version the app writes back.
  PARTNER_CENTER_CLIENT_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${clientSecretName})'
  PARTNER_CENTER_REFRESH_TOKEN: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${refreshTokenSecretName})'
}

// The appsettings resource replaces the whole set on every provision: what is not declared here
// (or in main.bicep) does not survive, so a hand-made portal change cannot drift silently.
// The checkov skips inside assume any sites/config resource is the 'web' section; this one is
// 'appsettings', which has none of those properties. The real site configuration (TLS, HTTP/2,
// public access) is on functionApp above and checked there.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: False positive: not a 'web' or 'authsettings' config; the HTTP API authenticates with function keys.
  // checkov:skip=CKV_AZURE_63: False positive: not a 'web' config; logs go to Application Insights.
  // checkov:skip=CKV_AZURE_65: False positive: not a 'web' config; logs go to Application Insights.
  // checkov:skip=CKV_AZURE_66: False positive: not a 'web' config; requests are traced by Application Insights.
  // checkov:skip=CKV_AZURE_80: False positive: not a 'web' config, and the app is Python, not .NET.
  // checkov:skip=CKV_AZURE_88: False positive: not a 'web' config; Flex Consumption uses no Azure Files share.
  // checkov:skip=CKV_AZURE_222: False positive: not a 'web' config; public access is decided on functionApp (skipped there with its reason).
  parent: functionApp
  name: 'appsettings'
  properties: union(appSettings, identitySettings)
}

// Deployments authenticate with Entra ID (azd uses the publish endpoint with a bearer token);
// basic publishing credentials stay off.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
