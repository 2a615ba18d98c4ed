import type { Action, AppliedInstance, LocalInstance } from './types.js'

/**
 * What a host removed from the cluster does: it removes every instance it runs. The rest of the cluster has gone on
 * without it (its nodes removed, its replicas dropped, its primaries failed over), so whatever it still runs could
 * only take writes nobody replicates, or come back as a second primary. Pure, like `plan`.
 */
export function removedHostActions (local: readonly LocalInstance[], applied: readonly AppliedInstance[]): Action[] {
  const databaseOf = new Map(applied.map(a => [a.instanceId, a.databaseId]))
  return local.map(i => ({ kind: 'remove-instance', instanceId: i.instanceId, databaseId: databaseOf.get(i.instanceId) }))
}
