// A storage account, identity-only: shared keys are off, so every request needs an Entra ID token whose principal
// holds a data role (rbac.bicep). main.bicep deploys it twice: for the Functions host (AzureWebJobsStorage), the
// usage tables and the rated-ingest queues, and apart for the Flex Consumption deployment package, which the app
// identity has no role on.

@description('Required. Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region of the storage account.')
param location string

@description('Optional. Tags applied to the storage account.')
param tags object = {}

@description('Optional. Blob containers to create (the deployment package container of the package account).')
param containerNames array = []

@description('Optional. Queues to create (the rated-ingest fan-out queue and its poison queue), so their roles can be scoped to them.')
param queueNames array = []

@description('Optional. Replication of the account. Zone- or geo-redundant SKUs keep the usage history through a zone or region outage.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_LRS'

@description('Optional. Default action of the storage firewall. Deny requires VNet integration and private endpoints, which this template does not deploy.')
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string = 'Allow'

@description('Optional. Days deleted blobs and containers stay recoverable.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 7

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: A Flex Consumption app without VNet integration calls storage from shared outbound addresses that cannot be listed in the firewall, so the default action is Allow (parameter networkDefaultAction). Exposure is limited by allowSharedKeyAccess false: every request needs an Entra ID token with a data role.
  // checkov:skip=CKV_AZURE_59: Public network access stays Enabled for the same reason as CKV_AZURE_35; data access still requires Entra ID and a data role.
  // checkov:skip=CKV_AZURE_206: Replication is the parameter skuName. LRS is the default for cost: current data is re-fetched by the next sync; choose ZRS/GZRS to protect history older than the Partner Center retention.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    dnsEndpointType: 'Standard'
    // Passed explicitly so a later change of the platform default cannot silently open or close the account.
    networkAcls: {
      defaultAction: networkDefaultAction
      bypass: 'AzureServices'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in containerNames: {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {}
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
  properties: {
    metadata: {}
  }
}]

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
