// Two log alerts over the app's Application Insights data, and an optional email action group:
//   run failed      a `snapshot.failed` line in traces, or a failed invocation of the timer function
//                   in requests, or a rotated refresh token that could not be saved to Key Vault
//                   (`secrets.refresh_token_not_saved`: App+User sign-in breaks once the old one
//                   expires), or change events that could not be sent (`snapshot.events_pending` at
//                   ERROR: the next run retries them) or were set aside for good (`snapshot.events_set_aside`:
//                   in outbox/failed/), or a Teams workflow or webhook endpoint that refused for good
//                   (`notify.given_up`: a configuration error, that card or those events given up);
//                   evaluated hourly over the last two hours, stateful, so one failure notifies once and
//                   resolves by itself. Event names: shared/events.py, shared/job/.
//   snapshot stale  no `snapshot.summary` line (one per successful run) for staleAfterHours; also fires
//                   during the first staleAfterHours after a fresh deployment, until the first night ran
// Cost at rest: two log alert rules at the hourly frequency (the cheapest tier: a small monthly fee
// each); the action group's emails are free up to a monthly allowance.

param namePrefix string
param location string
param tags object
param applicationInsightsName string

@description('Email to notify; empty: no action group (alerts still show in Azure Monitor).')
param alertEmail string

@minValue(2)
@maxValue(47)
param staleAfterHours int

param jobFunctionName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'snapshots'
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

var actionGroups = empty(alertEmail) ? [] : [
  actionGroup.id
]

resource runFailed 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-snapshot-run-failed-${namePrefix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Customer snapshot run failed'
    description: 'A snapshot run logged snapshot.failed, secrets.refresh_token_not_saved, snapshot.events_pending, snapshot.events_set_aside or notify.given_up, or the ${jobFunctionName} invocation failed. See traces and exceptions around that time.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT2H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: 'union isfuzzy=true (traces | where severityLevel >= 3 and (message startswith "snapshot.failed" or message startswith "secrets.refresh_token_not_saved" or message startswith "snapshot.events_pending" or message startswith "snapshot.events_set_aside" or message startswith "notify.given_up")), (requests | where name == "${jobFunctionName}" and success == false)'
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
    actions: {
      actionGroups: actionGroups
    }
  }
}

// The query's own time filter sets the staleness threshold; the query time range is widened beyond
// windowSize so that filter can see far enough back.
resource snapshotStale 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-snapshot-stale-${namePrefix}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'No customer snapshot published for ${staleAfterHours} h'
    description: 'No snapshot.summary line in ${staleAfterHours} hours: the nightly job has not published a snapshot.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT1H'
    overrideQueryTimeRange: 'P2D'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: 'traces | where timestamp > ago(${staleAfterHours}h) | where message startswith "snapshot.summary"'
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroups
    }
  }
}
