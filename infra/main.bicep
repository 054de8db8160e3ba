// Entry point for `azd provision`: the Partner Center usage sync (a Python function app on Flex Consumption),
// its storage, Key Vault and monitoring, deployed into one resource group that exists already
// (AZURE_RESOURCE_GROUP). Resource-group scope keeps every right a deployment needs inside that group: the CI
// principal holds Contributor and a constrained Role Based Access Control Administrator there and nowhere else
// (docs/deploy.md, step 12).
targetScope = 'resourceGroup'

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

@description('Optional. Object id of whoever runs azd (azd fills it in); gets the data roles below when principalDataRoles is true. Empty assigns nothing.')
param principalId string = ''

@description('Optional. Type of principalId (azd fills it in): User for a developer, ServicePrincipal for a pipeline identity.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Optional. Whether principalId gets data roles (Storage Table Data Contributor on the storage account, Key Vault Secrets Officer on the vault) for local tools in a development environment. Off by default: the runbook grants the deployer what a step needs for that step only (docs/deploy.md), and the CI pipeline never gets data access.')
@allowed([
  'true'
  'false'
])
param principalDataRoles string = 'false'

@description('Optional. Whether this deployment writes the custom role definitions (the refresh-token writer). Writing a role definition needs Owner or User Access Administrator: the first `azd up`, by the deployer, does it; the CI principal may not, so the workflow passes false and the role is only referenced.')
@allowed([
  'true'
  'false'
])
param manageRoleDefinitions string = 'true'

// ---------------------------------------------------------------------------------------------
// Resource names: each is derived from the environment unless given
// ---------------------------------------------------------------------------------------------

@description('Optional. User-assigned managed identity the app runs as (storage, tables, queues, Key Vault, telemetry).')
param identityName string = ''

@description('Optional. User-assigned managed identity that writes and reads the deployment package, and nothing else.')
param deploymentIdentityName string = ''

@description('Optional. Function app name (global DNS name under azurewebsites.net).')
param functionAppName string = ''

@description('Optional. Flex Consumption plan name.')
param appServicePlanName string = ''

@description('Optional. Storage account of the host and the usage data (3-24 lowercase letters and digits, globally unique).')
param storageAccountName string = ''

@description('Optional. Storage account holding only the deployment package, which the app identity cannot write (3-24 lowercase letters and digits, globally unique).')
param packageStorageAccountName string = ''

@description('Optional. Blob container of the package storage account that holds the deployment package.')
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

@description('Optional. NCRONTAB schedule of fetch_invoices (invoices, billed reconciliation and billed usage exports).')
param invoicesSchedule string = '0 40 6 * * *'

@description('Optional. NCRONTAB schedule of fetch_rate_card (the Azure rate card that prices legacy usage).')
param rateCardSchedule string = '0 10 4 * * *'

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

@description('Optional. Blobs an export must have before it is fanned out over the rated-ingest queue, one message per blob; a smaller export is ingested by the timer itself.')
@minValue(1)
@maxValue(100000)
param ratedUsageFanoutBlobs int = 4

@description('Optional. Share of an export\'s lines (0 to 1, e.g. 0.01) quarantined above which /api/health answers 503. A string: ARM has no fractional numbers, so the app checks the range when it starts.')
param ratedUsageQuarantineShare string = '0.01'

@description('Optional. Amount an invoice\'s rounded lines may differ from its total before its tie-out fails (e.g. 0 or 0.05). A string: ARM has no fractional numbers, so the app checks it when it starts.')
param billingTieoutTolerance string = '0'

@description('Optional. Runs of fetch_rated_usage without progress on an export after which /api/health answers 503.')
@minValue(1)
@maxValue(100)
param ratedUsageStalledRuns int = 3

@description('Optional. Comma-separated currencies of the Azure rate card that prices legacy usage (e.g. USD); empty: those the usage records show.')
param rateCardCurrencies string = ''

@description('Optional. The partner\'s market (ISO 3166 two-letter code) the rate card is asked for.')
param rateCardRegion string = 'US'

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

@description('Optional. Token mode: the issuer\'s authority; empty uses the Partner Center authority.')
param apiTokenAuthority string = ''

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

@description('Optional. Whether utilization records include instance-level details: true or false.')
@allowed([
  'true'
  'false'
])
param utilizationShowDetails string = 'true'

@description('Optional. Whether the stored cost is written as a FOCUS 1.2 dataset (Parquet) to the focus container of the app\'s storage account: true or false.')
@allowed([
  'true'
  'false'
])
param focusDataset string = 'true'

@description('Optional. Whether each grant shown prices also gets its own FOCUS dataset (its rows at its price) in a container of its own: true or false.')
@allowed([
  'true'
  'false'
])
param focusGrantDatasets string = 'false'

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
  identity: !empty(identityName) ? identityName : '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
  deploymentIdentity: !empty(deploymentIdentityName) ? deploymentIdentityName : '${abbrs.managedIdentityUserAssignedIdentities}deploy-${resourceToken}'
  functionApp: !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}api-${resourceToken}'
  plan: !empty(appServicePlanName) ? appServicePlanName : '${abbrs.webServerFarms}${resourceToken}'
  storage: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
  packageStorage: !empty(packageStorageAccountName) ? packageStorageAccountName : '${abbrs.storageStorageAccounts}pkg${resourceToken}'
  keyVault: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
  logAnalytics: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
  applicationInsights: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
}

var clientSecretName = 'partner-center-client-secret'
var refreshTokenSecretName = 'partner-center-refresh-token'

// The rated-usage ingest fans out one message per export blob on this queue of the app's storage account; the
// Functions host moves a message that keeps failing to '<queue>-poison'. Both exist before the app starts, so the
// app's queue role can be scoped to them (rbac.bicep).
var ratedIngestQueueName = 'rated-ingest'
var ratedIngestPoisonQueueName = '${ratedIngestQueueName}-poison'

// The FOCUS dataset's container in the app's storage account: the app identity's Storage Blob Data Owner there
// (which the Functions host needs for AzureWebJobsStorage) covers writing it; no other role is added.
var focusContainerName = 'focus'

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

module identity 'app/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module deploymentIdentity 'app/identity.bicep' = {
  name: 'deployment-identity'
  params: {
    name: names.deploymentIdentity
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    queueNames: [
      ratedIngestQueueName
      ratedIngestPoisonQueueName
    ]
    containerNames: [
      focusContainerName
    ]
    skuName: storageSkuName
    networkDefaultAction: storageNetworkDefaultAction
  }
}

// The package gets an account of its own: the app identity's Storage Blob Data Owner on the host's account (what
// the Functions host needs for identity-based AzureWebJobsStorage) cannot reach it.
module packageStorage 'app/storage.bicep' = {
  name: 'package-storage'
  params: {
    name: names.packageStorage
    location: location
    tags: tags
    containerNames: [
      deploymentContainerName
    ]
    networkDefaultAction: storageNetworkDefaultAction
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    ratedIngestQueueName: ratedIngestQueueName
    ratedIngestPoisonQueueName: ratedIngestPoisonQueueName
    packageStorageAccountName: packageStorage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    refreshTokenSecretName: refreshTokenSecretName
    grantRefreshTokenWrite: refreshTokenSecretExists == 'true'
    manageRoleDefinitions: manageRoleDefinitions == 'true'
    appPrincipalId: identity.outputs.principalId
    deploymentPrincipalId: deploymentIdentity.outputs.principalId
    userPrincipalId: principalDataRoles == 'true' ? principalId : ''
    userPrincipalType: principalType
  }
}

// The app settings an operator sets: each one is a parameter above, fed by main.parameters.json from the azd
// environment variable (or the repository variable, in CI) of the same name. infra/app-settings.json lists the
// settings the templates fix instead (identities, endpoints, Key Vault references: function.bicep) and those
// that never exist in Azure; scripts/check_deployment.py fails when a setting of shared/settings.py is neither
// here nor there, or misses a link of that chain. Numbers and flags are passed as the strings the code parses.
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
  INVOICES_SCHEDULE: invoicesSchedule
  RATE_CARD_SCHEDULE: rateCardSchedule
  API_ACCESS_MODE: apiAccessMode
  API_AUDIENCE: apiAudience
  API_ALLOWED_TENANTS: apiAllowedTenants
  API_TOKEN_AUTHORITY: apiTokenAuthority
  API_REQUIRED_ROLE: apiRequiredRole
  API_CORS_ORIGINS: apiCorsOrigins
  API_GRANTS_CACHE_SECONDS: string(apiGrantsCacheSeconds)
  GRAPH_BASE_URL: graphBaseUrl
  GRAPH_AUTHORITY: graphAuthority
  RATED_USAGE_CURRENCIES: ratedUsageCurrencies
  RATED_USAGE_ATTRIBUTE_SET: ratedUsageAttributeSet
  RATED_USAGE_EXPORT_WAIT_SECONDS: string(ratedUsageExportWaitSeconds)
  RATED_USAGE_SETTLE_DAYS: string(ratedUsageSettleDays)
  RATED_USAGE_FANOUT_BLOBS: string(ratedUsageFanoutBlobs)
  RATED_USAGE_QUARANTINE_SHARE: ratedUsageQuarantineShare
  BILLING_TIEOUT_TOLERANCE: billingTieoutTolerance
  RATED_USAGE_STALLED_RUNS: string(ratedUsageStalledRuns)
  RATE_CARD_CURRENCIES: rateCardCurrencies
  RATE_CARD_REGION: rateCardRegion
  UTILIZATION_GRANULARITY: utilizationGranularity
  UTILIZATION_SHOW_DETAILS: utilizationShowDetails
  FOCUS_DATASET: focusDataset
  FOCUS_GRANT_DATASETS: focusGrantDatasets
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
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    deploymentIdentityId: deploymentIdentity.outputs.resourceId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    focusContainerName: focusContainerName
    tableEndpoint: storage.outputs.tableEndpoint
    packageBlobEndpoint: packageStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    keyVaultUri: keyVault.outputs.uri
    clientSecretName: clientSecretName
    refreshTokenSecretName: refreshTokenSecretName
    maximumInstanceCount: maximumInstanceCount
    appSettings: syncSettings
  }
  // The host must find its storage, queue and Key Vault roles in place when it first starts.
  dependsOn: [
    rbac
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
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
// Outputs (azd writes them to .azure/<env>/.env; the runbook and local tools read them)
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${api.outputs.defaultHostName}'
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_APP_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_DEPLOYMENT_IDENTITY_PRINCIPAL_ID string = deploymentIdentity.outputs.principalId
output AZURE_REFRESH_TOKEN_WRITER_ROLE_ID string = rbac.outputs.refreshTokenWriterRoleId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output PARTNER_CENTER_REFRESH_TOKEN_SECRET_NAME string = refreshTokenSecretName
output PARTNER_CENTER_CLIENT_SECRET_NAME string = clientSecretName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_RATED_INGEST_QUEUE string = ratedIngestQueueName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output TABLE_PREFIX string = tablePrefix
