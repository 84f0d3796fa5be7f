// Backup Contributor for the worker's identity on one Recovery Services vault (default) or on the
// vault's resource group. Deployed into the vault's resource group by main.bicep.

targetScope = 'resourceGroup'

@description('Name of an existing Recovery Services vault in this resource group.')
param vaultName string

@description('Object (principal) id of the worker\'s user-assigned identity.')
param principalId string

@description('vault: assign on the vault itself; resourceGroup: on this resource group.')
@allowed([
  'vault'
  'resourceGroup'
])
param scopeLevel string = 'vault'

// Backup Contributor: manage backup (register containers, inquire, protect, back up, read jobs)
// in the vault, but not create vaults or grant access to others.
var backupContributorRoleId = '5e467623-bb1f-42f4-a55d-6e525e11384b'

resource vault 'Microsoft.RecoveryServices/vaults@2023-04-01' existing = {
  name: vaultName
}

resource onVault 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (scopeLevel == 'vault') {
  name: guid(vault.id, principalId, backupContributorRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', backupContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'sqlvm-backup: protect SQL databases and run backups in this vault'
  }
}

resource onResourceGroup 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (scopeLevel == 'resourceGroup') {
  name: guid(resourceGroup().id, principalId, backupContributorRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', backupContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'sqlvm-backup: protect SQL databases and run backups in this resource group\'s vaults'
  }
}

output vaultId string = vault.id
