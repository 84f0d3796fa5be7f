// sqlvm-backup on Azure Functions (Flex Consumption, custom handler).
//
// Deployed at resource-group scope:
//   az deployment group create -g <rg> -f infra/main.bicep -p @infra/parameters.json
//
// What it creates in that resource group: a user-assigned managed identity, a storage account (step
// queue, its poison queue, the workflow-state container, the deployment-package container), a Log
// Analytics workspace with Application Insights, a Flex Consumption plan and function app, and the
// subscription's Event Grid system topic. Outside it, through modules: Backup Contributor on each
// vault, Reader on the resource groups (or subscriptions) holding the VMs.
//
// Two phases (docs/deploy.md): the Event Grid subscription targets the OnVmWrite function, which
// exists only once the code is deployed, so it is created only with deployEventSubscription=true.
//
// Premium (EP1) is the documented fallback (docs/deploy.md, "Premium fallback"); this template
// builds the Flex Consumption app only.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

@description('A Recovery Services vault the worker may use: the same shape as rules.vaults[] in the worker configuration.')
type vaultRef = {
  @description('Full ARM id: /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.RecoveryServices/vaults/{name}.')
  vaultId: string

  @description('Azure region of the vault (a protect request for a VM picks the first vault in the VM\'s subscription and region).')
  location: string
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@description('Region of the function app, storage and monitoring resources. Must offer Flex Consumption: az functionapp list-flexconsumption-locations.')
param location string = resourceGroup().location

@description('Lower-case letters and digits, 3-11 characters: prefix of every resource name.')
@minLength(3)
@maxLength(11)
param namePrefix string = 'sqlvmbk'

@description('Tags put on every resource this template creates.')
param tags object = {}

@description('The Recovery Services vaults the worker protects into and backs up from. The identity gets Backup Contributor on each.')
@minLength(1)
param vaults vaultRef[]

@description('Where Backup Contributor is assigned: on each vault (least privilege) or on the vault\'s resource group (if the service asks for more than the vault).')
@allowed([
  'vault'
  'resourceGroup'
])
param vaultRoleScope string = 'vault'

@description('Resource group ids (/subscriptions/{sub}/resourceGroups/{rg}) holding the SQL VMs. The identity gets Reader on each, to read the VMs and their tags.')
param vmResourceGroupIds string[] = []

@description('Subscription ids whose VMs may be anywhere: Reader on the whole subscription. Prefer vmResourceGroupIds.')
param vmSubscriptionIds string[] = []

@description('Optional role definition GUID (built-in or custom) also assigned on every VM scope above, for example a custom role with Microsoft.Compute/virtualMachines/read and /write if registering a VM with the vault needs it (docs/deploy.md). Empty: none.')
param vmRegistrationRoleDefinitionId string = ''

@description('Name of the step queue (lower-case, 3-56 characters so that the host\'s "<name>-poison" stays within 63).')
@minLength(3)
@maxLength(56)
param stepQueueName string = 'sqlvm-steps'

@description('Blob container holding workflow state.')
@minLength(3)
@maxLength(63)
param stateContainerName string = 'sqlvm-state'

@description('Days a schedule/event claim blob is kept (a repeat within this time is recognised). At least the longest dedupe window or catch-up period.')
@minValue(1)
param claimRetentionDays int = 30

@description('Days the state of a workflow is kept after its last step (the workflow deadline is 24 h by default, so only ended workflows reach this age).')
@minValue(7)
param workflowRetentionDays int = 90

@description('Blob container Flex Consumption deploys the app package to.')
@minLength(3)
@maxLength(63)
param deploymentContainerName string = 'app-package'

@description('Six-field NCRONTAB (UTC) of the RunSchedule timer. The timer only wakes the scheduler, which decides which backup plans are due.')
param backupSchedule string = '0 */5 * * * *'

@description('Flex Consumption instance memory in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption scale-out limit (the plan accepts 40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('rules.policyTag: the VM tag naming the backup policy.')
param policyTag string = 'backup-policy'

@description('rules.defaultPolicy: policy for a VM without the tag. Empty: none (such a workflow fails with NoPolicyForVm).')
param defaultPolicy string = ''

@description('api.auth of the worker configuration, e.g. {"mode":"apiKey","keys":[{"name":"ops","key":"...","vaults":["*"]}]}. Ignored when configSecretUri is set.')
@secure()
param apiAuth object = {}

@description('scheduler.plans of the worker configuration (see docs/configuration.md). Empty: no scheduler section.')
param backupPlans array = []

@description('engine section of the worker configuration (timings and limits). Empty: the worker\'s defaults.')
param engineSettings object = {}

@description('Add the events section to the configuration, so that OnVmWrite starts protect workflows for new or updated VMs.')
param enableVmEvents bool = true

@description('events.resourceGroups: resource-group patterns (*) whose VM events are acted on. Empty: any resource group of this subscription.')
param vmEventResourceGroups string[] = []

@description('events.protect: what each event-started protect workflow asks for.')
param vmEventProtect object = {
  autoProtect: true
  initialFullBackup: false
}

@description('Key Vault secret URI (https://<vault>.vault.azure.net/secrets/<name>[/<version>]) holding the whole worker configuration JSON. Set: SQLVM_BACKUP_CONFIG becomes a Key Vault reference and apiAuth, policyTag, defaultPolicy, backupPlans, engineSettings and the vmEvent parameters are ignored (vaults still drives the role assignments).')
param configSecretUri string = ''

@description('Application Insights accepts only Entra-authenticated telemetry (the identity gets Monitoring Metrics Publisher on the component).')
param appInsightsDisableLocalAuth bool = true

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Create the subscription\'s Event Grid system topic here. Azure allows one system topic per source: set false and name the existing one in existingSystemTopicResourceGroup/systemTopicName if the subscription already has one.')
param createSystemTopic bool = true

@description('Name of the subscription\'s system topic (created or existing).')
param systemTopicName string = '${namePrefix}-subscription-events'

@description('Resource group of an existing system topic (when createSystemTopic is false). Empty: this resource group.')
param existingSystemTopicResourceGroup string = ''

@description('Phase 2: create the Event Grid subscription to the OnVmWrite function. Only after the code is deployed (the function must exist).')
param deployEventSubscription bool = false

// ---------------------------------------------------------------------------------------------
// Names and constants
// ---------------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, namePrefix)
var storageAccountName = take(toLower('${namePrefix}${suffix}'), 24)
var functionAppName = '${namePrefix}-func-${suffix}'
var planName = '${namePrefix}-plan-${suffix}'
var identityName = '${namePrefix}-id-${suffix}'
var appInsightsName = '${namePrefix}-appi-${suffix}'
var workspaceName = '${namePrefix}-log-${suffix}'
var poisonQueueName = '${stepQueueName}-poison'

// The endpoints the app settings name, built for the cloud being deployed to (core.windows.net in
// the public cloud), without the trailing slash the storage account's primaryEndpoints carry.
var queueServiceUri = 'https://${storageAccountName}.queue.${environment().suffixes.storage}'
var blobServiceUri = 'https://${storageAccountName}.blob.${environment().suffixes.storage}'

// Built-in role definition ids (the same GUID in every subscription and tenant).
var roleIds = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

// One user-assigned identity for everything: the Functions host's storage connection, the
// StepQueue trigger connection, the deployment-package download, Key Vault references, and the
// worker's own ARM and Storage calls. Its roles are assigned below and in the modules.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------
// Storage: host storage, step queue, poison queue, state container, deployment container
// ---------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // Flex Consumption has no Azure Files content share and every client here (the host, the
    // deployment, the worker) authenticates with Entra ID, so account keys and SAS are turned off.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'
    properties: {
      // Workflow state survives an accidental delete for a week.
      deleteRetentionPolicy: {
        enabled: true
        days: 7
      }
      containerDeleteRetentionPolicy: {
        enabled: true
        days: 7
      }
    }

    resource stateContainer 'containers' = {
      name: stateContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  // Claims (one blob per schedule occurrence or VM-event window) are only needed while a repeat
  // could arrive; ended workflows are history. Both would otherwise accumulate forever. Running
  // workflows are rewritten at every step, so age since modification never reaches them.
  resource lifecycle 'managementPolicies' = {
    name: 'default'
    properties: {
      policy: {
        rules: [
          {
            name: 'expire-claims'
            enabled: true
            type: 'Lifecycle'
            definition: {
              filters: {
                blobTypes: [ 'blockBlob' ]
                prefixMatch: [ '${stateContainerName}/claims/' ]
              }
              actions: {
                baseBlob: {
                  delete: {
                    daysAfterModificationGreaterThan: claimRetentionDays
                  }
                }
              }
            }
          }
          {
            name: 'expire-ended-workflows'
            enabled: true
            type: 'Lifecycle'
            definition: {
              filters: {
                blobTypes: [ 'blockBlob' ]
                prefixMatch: [ '${stateContainerName}/workflows/' ]
              }
              actions: {
                baseBlob: {
                  delete: {
                    daysAfterModificationGreaterThan: workflowRetentionDays
                  }
                }
              }
            }
          }
        ]
      }
    }
  }

  resource queueService 'queueServices' = {
    name: 'default'

    resource stepQueue 'queues' = {
      name: stepQueueName
    }

    // The host creates it on the first poisoned message; created here so that monitoring and
    // `sqlvm-backup requeue-poison` find it from day one.
    resource poisonQueue 'queues' = {
      name: poisonQueueName
    }
  }
}

// Storage Blob Data Owner, on this account only. The Functions host's AzureWebJobsStorage
// connection needs it (Microsoft's documented role for host storage): blob leases for the timer
// singleton and the host id lock, the timer's schedule status (useMonitor), the function keys
// (azure-webjobs-secrets), and container creation. It also covers reading the deployment package
// from the deployment container and the worker's reads and writes of workflow state in the state
// container, so no separate Storage Blob Data Contributor assignment is made (it would be a subset).
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'sqlvm-backup: Functions host storage (leases, timers, keys), deployment package, workflow state'
  }
}

// Storage Queue Data Contributor, on this account only. The RunStep queue trigger (connection
// StepQueue) reads, hides and deletes messages and adds failed ones to <queue>-poison; the worker
// puts each next step with a visibility delay and `requeue-poison` moves messages back.
resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleIds.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'sqlvm-backup: step queue trigger, delayed next steps, poison queue'
  }
}

// ---------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: appInsightsDisableLocalAuth
  }
}

// Monitoring Metrics Publisher, on this Application Insights component only: with local auth
// disabled, the host sends telemetry with the identity's token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (appInsightsDisableLocalAuth) {
  name: guid(appInsights.id, identity.id, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'sqlvm-backup: Entra-authenticated telemetry to Application Insights'
  }
}

// ---------------------------------------------------------------------------------------------
// Worker configuration (SQLVM_BACKUP_CONFIG)
// ---------------------------------------------------------------------------------------------

// The same JSON as docs/configuration.md (unknown fields are errors there). No azureStorage
// section: in Functions mode the queue and container come from StepQueue__queueServiceUri,
// STEP_QUEUE and STATE_CONTAINER, the blob endpoint is derived from the queue's account, and the
// identity is StepQueue__clientId. No events.auth: behind the Event Grid trigger the host
// authenticates Event Grid (the key is only for the standalone webhook of `serve`).
var rulesSection = union({
  policyTag: policyTag
  vaults: vaults
}, empty(defaultPolicy) ? {} : {
  defaultPolicy: defaultPolicy
})

var eventsSection = union({
  subscriptions: [
    subscription().subscriptionId
  ]
  protect: vmEventProtect
}, empty(vmEventResourceGroups) ? {} : {
  resourceGroups: vmEventResourceGroups
})

var backupConfig = union({
  arm: {
    credential: {
      kind: 'managedIdentity'
      clientId: identity.properties.clientId
    }
  }
  api: {
    auth: apiAuth
  }
  rules: rulesSection
}, empty(backupPlans) ? {} : {
  scheduler: {
    plans: backupPlans
  }
}, enableVmEvents ? {
  events: eventsSection
} : {}, empty(engineSettings) ? {} : {
  engine: engineSettings
})

var backupConfigSetting = empty(configSecretUri) ? string(backupConfig) : '@Microsoft.KeyVault(SecretUri=${configSecretUri})'

// ---------------------------------------------------------------------------------------------
// Function app (Flex Consumption, custom handler)
// ---------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
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
  }
}

// Flex Consumption takes the runtime, scale and deployment storage from functionAppConfig and
// rejects or ignores FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE
// and the content-share settings, so none of them is set here.
var baseAppSettings = [
  // Host storage, identity-based (no connection string exists: shared keys are off).
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storage.name
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identity.properties.clientId
  }
  // The RunStep trigger's connection ("connection": "StepQueue" in its function.json).
  {
    name: 'StepQueue__queueServiceUri'
    value: queueServiceUri
  }
  // Not used by the trigger; tells the worker the blob endpoint of the state container instead of
  // deriving it from the queue endpoint (which only works in the public cloud).
  {
    name: 'StepQueue__blobServiceUri'
    value: blobServiceUri
  }
  {
    name: 'StepQueue__credential'
    value: 'managedidentity'
  }
  {
    name: 'StepQueue__clientId'
    value: identity.properties.clientId
  }
  // Read by the worker and by %STEP_QUEUE% / %BACKUP_SCHEDULE% in the function.json files.
  {
    name: 'STEP_QUEUE'
    value: stepQueueName
  }
  {
    name: 'STATE_CONTAINER'
    value: stateContainerName
  }
  {
    name: 'BACKUP_SCHEDULE'
    value: backupSchedule
  }
  {
    name: 'SQLVM_BACKUP_CONFIG'
    value: backupConfigSetting
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identity.properties.clientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
]

var appInsightsAuthSetting = appInsightsDisableLocalAuth ? [
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  }
] : []

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references (configSecretUri, or secrets you add) resolve with this identity.
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: concat(baseAppSettings, appInsightsAuthSetting)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobServiceUri}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
  // The host reaches storage at its first start: let the roles exist by then.
  dependsOn: [
    blobOwner
    queueContributor
    storage::blobService::deploymentContainer
    storage::queueService::stepQueue
  ]
}

// ---------------------------------------------------------------------------------------------
// Roles outside this resource group
// ---------------------------------------------------------------------------------------------

// Backup Contributor on each vault (or its resource group): registration, inquiry, protection,
// backups and job polls are all calls under the vault.
module vaultAccess 'modules/vault-access.bicep' = [for (v, i) in vaults: {
  name: take('sqlvm-vault-${i}-${uniqueString(v.vaultId, identity.id)}', 64)
  scope: resourceGroup(split(v.vaultId, '/')[2], split(v.vaultId, '/')[4])
  params: {
    vaultName: last(split(v.vaultId, '/'))
    principalId: identity.properties.principalId
    scopeLevel: vaultRoleScope
  }
}]

// Reader where the VMs are: the worker reads each VM (location, tags) before protecting it.
module vmGroupReader 'modules/vm-reader-rg.bicep' = [for (rgId, i) in vmResourceGroupIds: {
  name: take('sqlvm-vmrg-${i}-${uniqueString(rgId, identity.id)}', 64)
  scope: resourceGroup(split(rgId, '/')[2], split(rgId, '/')[4])
  params: {
    principalId: identity.properties.principalId
    extraRoleDefinitionId: vmRegistrationRoleDefinitionId
  }
}]

module vmSubscriptionReader 'modules/vm-reader-subscription.bicep' = [for (subId, i) in vmSubscriptionIds: {
  name: take('sqlvm-vmsub-${i}-${uniqueString(subId, identity.id)}', 64)
  scope: subscription(last(split(subId, '/')))
  params: {
    principalId: identity.properties.principalId
    extraRoleDefinitionId: vmRegistrationRoleDefinitionId
  }
}]

// ---------------------------------------------------------------------------------------------
// Event Grid: the subscription's system topic and (phase 2) the OnVmWrite subscription
// ---------------------------------------------------------------------------------------------

module vmEvents 'modules/vm-events.bicep' = {
  name: take('sqlvm-events-${uniqueString(resourceGroup().id, namePrefix)}', 64)
  scope: resourceGroup(empty(existingSystemTopicResourceGroup) ? resourceGroup().name : existingSystemTopicResourceGroup)
  params: {
    createSystemTopic: createSystemTopic
    systemTopicName: systemTopicName
    tags: tags
    deployEventSubscription: deployEventSubscription
    eventSubscriptionName: '${namePrefix}-vm-writes'
    functionResourceId: '${functionApp.id}/functions/OnVmWrite'
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (no secrets)
// ---------------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output functionAppId string = functionApp.id
output functionAppHostName string = functionApp.properties.defaultHostName
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output identityResourceId string = identity.id
output storageAccountName string = storage.name
output stepQueue string = stepQueueName
output poisonQueue string = poisonQueueName
output stateContainer string = stateContainerName
output deploymentContainer string = deploymentContainerName
output queueServiceUri string = queueServiceUri
output appInsightsName string = appInsights.name
output systemTopicName string = systemTopicName
output onVmWriteFunctionId string = '${functionApp.id}/functions/OnVmWrite'
output eventSubscriptionDeployed bool = deployEventSubscription
