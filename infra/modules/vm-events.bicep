// The subscription's Event Grid system topic and, in phase 2, the event subscription that sends
// VM write successes to the OnVmWrite function. Deployed into the topic's resource group.

targetScope = 'resourceGroup'

@description('Create the system topic (false: it exists already under systemTopicName in this resource group).')
param createSystemTopic bool = true

@description('Name of the system topic for this subscription.')
param systemTopicName string

@description('Tags of the system topic.')
param tags object = {}

@description('Create the event subscription. Only once OnVmWrite exists, i.e. after the code is deployed.')
param deployEventSubscription bool = false

@description('Name of the event subscription.')
param eventSubscriptionName string

@description('Resource id of the OnVmWrite function: <function app id>/functions/OnVmWrite.')
param functionResourceId string

// Subscription-level system topics are global resources whose source is the subscription itself.
resource newTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createSystemTopic) {
  name: systemTopicName
  location: 'global'
  tags: tags
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

// The same topic, created above or pre-existing, as the parent of the event subscription.
resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource vmWrites 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscription) {
  parent: topic
  name: eventSubscriptionName
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: functionResourceId
        // One event per delivery: a failed event is redelivered alone.
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: [
            'Microsoft.Compute/virtualMachines/write'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
  dependsOn: [
    newTopic
  ]
}

output systemTopicId string = topic.id
output eventSubscriptionName string = deployEventSubscription ? eventSubscriptionName : ''
