// Reader for the worker's identity on a whole subscription, for VMs that may sit in any resource
// group (prefer vm-reader-rg.bicep), plus an optional extra role on the same scope.

targetScope = 'subscription'

@description('Object (principal) id of the worker\'s user-assigned identity.')
param principalId string

@description('Optional role definition GUID also assigned here (e.g. a custom VM registration role). Empty: none.')
param extraRoleDefinitionId string = ''

// Reader: view all resources, change nothing.
var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, readerRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'sqlvm-backup: read SQL VMs and their tags'
  }
}

resource extra 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(extraRoleDefinitionId)) {
  name: guid(subscription().id, principalId, extraRoleDefinitionId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', extraRoleDefinitionId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'sqlvm-backup: VM registration with the vault'
  }
}
