// Azure Monitor alerts on what the app logs to Application Insights (docs/deploy.md, "Reading run
// records and logs", has the same queries to paste). Three log search alert rules:
//   failed runs   a timer invocation failed, or its run ended failed or stalled (shared/sync/runs.py);
//   stale data    a timer function that has succeeded before has no successful run within
//                 HEALTH_MAX_AGE_HOURS, the limit after which /api/health answers 503 (shared/api/health.py);
//                 a function that has not succeeded yet (a new deployment before its first consent and runs)
//                 is left to the failed-runs and re-consent rules;
//   re-consent    a token request was refused as needing a partner admin's new consent
//                 (ReconsentRequired), or calls were answered 401 repeatedly (an expired client secret,
//                 an app no longer allowed in Partner Center).
// The e-mail receiver is a parameter: without one the rules still fire in the portal (Monitor > Alerts)
// but notify nobody.

@description('Required. Azure region of the alert rules.')
param location string

@description('Optional. Tags applied to the rules and the action group.')
param tags object = {}

@description('Required. Resource id of the Application Insights component the rules query.')
param applicationInsightsId string

@description('Required. Name of the action group (created only when alertEmail is given).')
param actionGroupName string

@description('Optional. E-mail address the alerts are sent to; empty creates no action group.')
param alertEmail string = ''

@description('Optional. Hours without a successful run after which a function counts as stale (HEALTH_MAX_AGE_HOURS). The rule reads at most 48 hours and needs the last success within them, so larger values alert at 46.')
@minValue(1)
param healthMaxAgeHours int = 26

@description('Optional. Names of the timer functions whose runs are watched (the function folders).')
param timerFunctions array = [
  'fetch_usage_records'
  'fetch_usage_summary'
  'fetch_utilization'
  'fetch_rated_usage'
  'fetch_invoices'
  'fetch_rate_card'
]

@description('Optional. 401 answers or refused token requests within 6 hours that raise the re-consent alert even without an explicit re-consent error.')
@minValue(1)
param unauthorizedThreshold int = 3

var notify = !empty(alertEmail)
// The names as a JSON array, which KQL reads as dynamic([...]). Multi-line strings take no
// interpolation, so the queries get their values through format().
var functionList = string(timerFunctions)
var staleHours = min(healthMaxAgeHours, 46)

// Each run logs one summary line when it ends: '<function> <status> in <s>s: rows=... correlation_id=...'
// (SyncRun.summary); a failed invocation is a failed request of that function name.
var failedRunsQuery = format('''
let expected = dynamic({0});
union
  (requests | where name in (expected) and success == false | project function = name, timestamp),
  (traces | where message matches regex @"^\w+ (failed|stalled) in [0-9.]+s: " | extend function = extract(@"^(\w+) ", 1, message) | where function in (expected) | project function, timestamp)
| summarize failures = count() by function
''', functionList)

// Suppressed until a function's first success: only a function with a success line in the rule's range (two days,
// the most a log search alert reads) and none within staleHours is returned. The telemetry the rules read (traces
// and requests) is never sampled (host.json excludedTypes; scripts/check_deployment.py holds the two together).
var staleQuery = format('''
let expected = dynamic({0});
traces
| where message matches regex @"^\w+ succeeded in [0-9.]+s: "
| extend function = extract(@"^(\w+) ", 1, message)
| where function in (expected)
| summarize lastSuccess = max(timestamp) by function
| where lastSuccess < ago({1}h)
''', functionList, staleHours)

// ReconsentRequired's message says a partner admin must sign in again ('re-consent'); a missing token
// carries code=missing_refresh_token. Both are logged at error level when the run records the failure.
var reconsentQuery = '''
traces
| where severityLevel >= 3
| where message has "re-consent" or message has "code=missing_refresh_token" or message has "code=invalid_grant"
| project timestamp, message
'''

var unauthorizedQuery = '''
traces
| where severityLevel >= 3
| where message has "status=401" or message has "code=invalid_client" or message has "code=unauthorized_client"
| project timestamp, message
'''

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (notify) {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'pc-usage'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroups = notify ? [actionGroup.id] : []

resource failedRuns 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-failed-runs-${uniqueString(applicationInsightsId)}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Partner Center usage: a timer run failed'
    description: 'A fetch_* function failed or its run ended failed/stalled. Read the run record (GET /api/health, lastRun.lastError) and docs/deploy.md.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: failedRunsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'function'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource staleData 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-stale-data-${uniqueString(applicationInsightsId)}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Partner Center usage: data older than the health limit'
    description: 'A fetch_* function that succeeded before has had no successful run for ${staleHours} hours: /api/health answers 503. Check its last run and the re-consent alert. Close the alert once data is fresh again (it does not resolve itself).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    // The query filters on its own look-back (staleHours); the range it may read is widened to match.
    overrideQueryTimeRange: 'P2D'
    criteria: {
      allOf: [
        {
          query: staleQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    // Stateless, with its notifications muted for a day once fired: past the two days the rule can read, the
    // condition no longer holds and a stateful alert would resolve itself while the data stays stale; this one
    // stays open until an operator closes it.
    autoMitigate: false
    muteActionsDuration: 'PT24H'
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource reconsent 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-reconsent-${uniqueString(applicationInsightsId)}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Partner Center usage: a partner admin must consent again'
    description: 'The refresh token no longer works (invalid_grant / AADSTS700082) or none is stored. Run the consent command (docs/deploy.md, "When health says re-consent").'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: reconsentQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource unauthorized 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-unauthorized-${uniqueString(applicationInsightsId)}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Partner Center usage: repeated 401 / refused credentials'
    description: 'Partner Center or the token endpoint refused the app ${unauthorizedThreshold} or more times in 6 hours: an expired client secret, an app removed from Partner Center App management, or a missing role. See docs/deploy.md.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT6H'
    criteria: {
      allOf: [
        {
          query: unauthorizedQuery
          timeAggregation: 'Count'
          operator: 'GreaterThanOrEqual'
          threshold: unauthorizedThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

output actionGroupId string = notify ? actionGroup.id : ''
output ruleIds array = [
  failedRuns.id
  staleData.id
  reconsent.id
  unauthorized.id
]
