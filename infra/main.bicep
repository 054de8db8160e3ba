// Entry point for `azd provision`: one resource group holding the Partner Center usage sync
// (a Python function app on Flex Consumption), its storage, Key Vault and monitoring.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// Environment (filled by azd from main.parameters.json)
// ---------------------------------------------------------------------------------------------

@description('Required. Name of the azd environment; seeds the unique suffix of every resource name.')
@minLength(1)
@maxLength(64)
param environmentName string

// The regions that offer Flex Consumption, from infra/flex-consumption.json (its source and how complete it
// is are there; scripts/parse_bicep.py fails when the two lists differ). azd offers only these when it asks.
@description('Required. Azure region of all resources; it must offer the Flex Consumption plan (see infra/flex-consumption.json).')
@minLength(1)
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'eastus2euap'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Optional. Object id of the developer running azd; gets the data roles so local tools work. Empty assigns nothing.')
param principalId string = ''

@description('Optional. Type of principalId: User for a developer, ServicePrincipal when a pipeline identity runs azd.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Optional. Whether principalId gets the data roles (tables, blobs, Key Vault secrets). A developer needs them for local tools; the CI pipeline sets false, so its service principal can deploy but never read usage data or secrets.')
@allowed([
  'true'
  'false'
])
param principalDataRoles string = 'true'

// ---------------------------------------------------------------------------------------------
// Resource names: each is derived from the environment unless given
// ---------------------------------------------------------------------------------------------

@description('Optional. Resource group name. Default: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Optional. User-assigned managed identity name.')
param identityName string = ''

@description('Optional. Function app name (global DNS name under azurewebsites.net).')
param functionAppName string = ''

@description('Optional. Flex Consumption plan name.')
param appServicePlanName string = ''

@description('Optional. Storage account name (3-24 lowercase letters and digits, globally unique).')
param storageAccountName string = ''

@description('Optional. Blob container holding the deployment package.')
param deploymentContainerName string = 'app-package'

@description('Optional. Key vault name (3-24 characters, globally unique).')
param keyVaultName string = ''

@description('Optional. Log Analytics workspace name.')
param logAnalyticsName string = ''

@description('Optional. Application Insights component name.')
param applicationInsightsName string = ''

// ---------------------------------------------------------------------------------------------
// Hosting and network
// ---------------------------------------------------------------------------------------------

@description('Optional. Upper bound of Flex Consumption instances (40 to 1000, the range the platform accepts). Partner Center throttles long before a high count pays off.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Optional. Storage replication SKU.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Optional. Storage firewall default action. Keep Allow unless VNet integration and private endpoints are added.')
@allowed([
  'Allow'
  'Deny'
])
param storageNetworkDefaultAction string = 'Allow'


// ---------------------------------------------------------------------------------------------
// Partner Center connection
// ---------------------------------------------------------------------------------------------

@description('Required. Entra ID tenant id of the partner (Cloud Solution Provider) tenant.')
param partnerCenterTenantId string

@description('Required. Application (client) id of the Partner Center app registration.')
param partnerCenterClientId string

@description('Optional. Whether the refresh-token secret exists in the vault (the consent command, tools/consent.py, creates it). When true the app identity also gets Key Vault Secrets Officer on that one secret, so it can write each rotated token; a role assignment cannot be scoped to a secret that does not exist yet, so the first provision runs with false.')
@allowed([
  'true'
  'false'
])
param refreshTokenSecretExists string = 'false'

@description('Optional. Partner Center API base URL.')
param partnerCenterBaseUrl string = 'https://api.partnercenter.microsoft.com'

@description('Optional. Entra ID authority host (https://login.microsoftonline.us for US Government).')
param partnerCenterAuthority string = 'https://login.microsoftonline.com'

// ---------------------------------------------------------------------------------------------
// Sync behaviour (app settings; see docs/architecture.md)
// ---------------------------------------------------------------------------------------------

@description('Optional. Prefix of every table name.')
param tablePrefix string = 'pc'

@description('Optional. NCRONTAB schedule of fetch_usage_records.')
param usageRecordsSchedule string = '0 15 * * * *'

@description('Optional. NCRONTAB schedule of fetch_usage_summary.')
param usageSummarySchedule string = '0 30 */6 * * *'

@description('Optional. NCRONTAB schedule of fetch_utilization.')
param utilizationSchedule string = '0 45 */3 * * *'

@description('Optional. NCRONTAB schedule of fetch_rated_usage (the Graph billing export, Azure plan daily cost).')
param ratedUsageSchedule string = '0 20 5,17 * * *'

@description('Optional. Microsoft Graph base URL (the billing export is global cloud only).')
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('Optional. Token authority for the Graph app-only token; empty uses the Partner Center authority.')
param graphAuthority string = ''

@description('Optional. Comma-separated billing currencies to export (e.g. USD,EUR); empty: those the usage records show.')
param ratedUsageCurrencies string = ''

@description('Optional. Line attributes of the export: full or basic.')
@allowed([
  'full'
  'basic'
])
param ratedUsageAttributeSet string = 'full'

@description('Optional. Seconds one run polls an export before leaving it to the next run.')
@minValue(10)
@maxValue(3600)
param ratedUsageExportWaitSeconds int = 240

@description('Optional. Days after its end that the last period keeps being exported.')
@minValue(1)
@maxValue(40)
param ratedUsageSettleDays int = 7

@description('Optional. Who reads customer data: key (the function key, partner-wide), token (Entra ID tokens under /api/scoped/, each caller within its grant), or both while portals move to tokens.')
@allowed([
  'key'
  'both'
  'token'
])
param apiAccessMode string = 'key'

@description('Optional. Token mode: accepted audiences of caller tokens (this API\'s application ID URI and/or client id), comma-separated.')
param apiAudience string = ''

@description('Optional. Token mode: tenant ids whose tokens are accepted, comma-separated; empty: the partner tenant.')
param apiAllowedTenants string = ''

@description('Optional. Token mode: the app role caller tokens must carry.')
param apiRequiredRole string = 'Usage.Read'

@description('Optional. Token mode: browser origins allowed to call /api/scoped/, comma-separated.')
param apiCorsOrigins string = ''

@description('Optional. Token mode: seconds a caller\'s grant is reused before it is read again.')
@minValue(0)
@maxValue(600)
param apiGrantsCacheSeconds int = 60

@description('Optional. Granularity of utilization records.')
@allowed([
  'daily'
  'hourly'
])
param utilizationGranularity string = 'daily'

@description('Optional. Whether utilization records include instance-level details.')
param utilizationShowDetails bool = true

@description('Optional. Days of utilization fetched on the first run.')
@minValue(1)
@maxValue(90)
param utilizationBackfillDays int = 30

@description('Optional. Width in hours of one reported-time window of utilization (divides 24, so windows align to days).')
@allowed([
  1
  2
  3
  4
  6
  8
  12
  24
])
param utilizationWindowHours int = 24

@description('Optional. Hours a window must have ended before it is fetched (Partner Center answers 204 near now).')
@minValue(2)
@maxValue(72)
param utilizationLagHours int = 6

@description('Optional. Subscriptions synced at once.')
@minValue(1)
@maxValue(32)
param syncConcurrency int = 4

@description('Optional. Seconds after which a sync starts no new work; never later than the function timeout (host.json, 600 s) less 30 s, whatever is set here.')
@minValue(30)
@maxValue(3600)
param syncTimeBudgetSeconds int = 480

@description('Optional. Hours the customers listing is reused before it is read again (0: every run).')
@minValue(0)
@maxValue(168)
param inventoryRefreshHours int = 6

@description('Optional. Hours after which a known customer\'s subscriptions are listed again (new customers at once; 0: every run).')
@minValue(0)
@maxValue(720)
param inventorySubscriptionsHours int = 24

@description('Optional. Comma-separated customer ids to sync; empty syncs every customer.')
param customerAllowList string = ''

@description('Optional. Comma-separated customer ids never synced.')
param customerDenyList string = ''

@description('Optional. Hours after which a function without a successful run reports unhealthy.')
@minValue(1)
@maxValue(744)
param healthMaxAgeHours int = 26

// ---------------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------------

@description('Optional. E-mail address the alerts are sent to. Empty deploys the alert rules without an action group: they fire in the portal (Monitor > Alerts) but notify nobody.')
param alertEmail string = ''

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var names = {
  resourceGroup: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  identity: !empty(identityName) ? identityName : '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
  functionApp: !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}api-${resourceToken}'
  plan: !empty(appServicePlanName) ? appServicePlanName : '${abbrs.webServerFarms}${resourceToken}'
  storage: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
  keyVault: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
  logAnalytics: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
  applicationInsights: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
}

var clientSecretName = 'partner-center-client-secret'
var refreshTokenSecretName = 'partner-center-refresh-token'

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: names.resourceGroup
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: names.storage
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    skuName: storageSkuName
    networkDefaultAction: storageNetworkDefaultAction
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: names.keyVault
    location: location
    tags: tags
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    refreshTokenSecretName: refreshTokenSecretName
    grantRefreshTokenWrite: refreshTokenSecretExists == 'true'
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalDataRoles == 'true' ? principalId : ''
    userPrincipalType: principalType
  }
}

// Settings the code reads (docs/architecture.md). Numbers and booleans are passed as the strings
// the code parses. LOCAL_FUNCTION_KEY is devhost-only and USAGE_STORAGE (a connection string) is
// for Azurite: neither belongs in Azure.
var syncSettings = {
  PARTNER_CENTER_BASE_URL: partnerCenterBaseUrl
  PARTNER_CENTER_AUTHORITY: partnerCenterAuthority
  PARTNER_CENTER_TENANT_ID: partnerCenterTenantId
  PARTNER_CENTER_CLIENT_ID: partnerCenterClientId
  TABLE_PREFIX: tablePrefix
  USAGE_RECORDS_SCHEDULE: usageRecordsSchedule
  USAGE_SUMMARY_SCHEDULE: usageSummarySchedule
  UTILIZATION_SCHEDULE: utilizationSchedule
  RATED_USAGE_SCHEDULE: ratedUsageSchedule
  API_ACCESS_MODE: apiAccessMode
  API_AUDIENCE: apiAudience
  API_ALLOWED_TENANTS: apiAllowedTenants
  API_TOKEN_AUTHORITY: partnerCenterAuthority
  API_REQUIRED_ROLE: apiRequiredRole
  API_CORS_ORIGINS: apiCorsOrigins
  API_GRANTS_CACHE_SECONDS: string(apiGrantsCacheSeconds)
  GRAPH_BASE_URL: graphBaseUrl
  GRAPH_AUTHORITY: graphAuthority
  RATED_USAGE_CURRENCIES: ratedUsageCurrencies
  RATED_USAGE_ATTRIBUTE_SET: ratedUsageAttributeSet
  RATED_USAGE_EXPORT_WAIT_SECONDS: string(ratedUsageExportWaitSeconds)
  RATED_USAGE_SETTLE_DAYS: string(ratedUsageSettleDays)
  UTILIZATION_GRANULARITY: utilizationGranularity
  UTILIZATION_SHOW_DETAILS: utilizationShowDetails ? 'true' : 'false'
  UTILIZATION_BACKFILL_DAYS: string(utilizationBackfillDays)
  UTILIZATION_WINDOW_HOURS: string(utilizationWindowHours)
  UTILIZATION_LAG_HOURS: string(utilizationLagHours)
  SYNC_CONCURRENCY: string(syncConcurrency)
  SYNC_TIME_BUDGET_SECONDS: string(syncTimeBudgetSeconds)
  INVENTORY_REFRESH_HOURS: string(inventoryRefreshHours)
  INVENTORY_SUBSCRIPTIONS_HOURS: string(inventorySubscriptionsHours)
  CUSTOMER_ALLOW_LIST: customerAllowList
  CUSTOMER_DENY_LIST: customerDenyList
  HEALTH_MAX_AGE_HOURS: string(healthMaxAgeHours)
}

module api 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    keyVaultUri: keyVault.outputs.uri
    clientSecretName: clientSecretName
    refreshTokenSecretName: refreshTokenSecretName
    maximumInstanceCount: maximumInstanceCount
    appSettings: syncSettings
  }
  // The host must find its storage and Key Vault roles in place when it first starts.
  dependsOn: [
    rbac
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    actionGroupName: '${abbrs.insightsActionGroups}${resourceToken}'
    alertEmail: alertEmail
    healthMaxAgeHours: healthMaxAgeHours
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd writes them to .azure/<env>/.env; the workflow and local tools read them)
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${api.outputs.defaultHostName}'
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output PARTNER_CENTER_REFRESH_TOKEN_SECRET_NAME string = refreshTokenSecretName
output PARTNER_CENTER_CLIENT_SECRET_NAME string = clientSecretName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output TABLE_PREFIX string = tablePrefix
