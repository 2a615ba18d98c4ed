import type { Backups, Databases, Operations, Restores, Tasks } from '@pgmesh/cluster'
import type { Host, HostHealth, HostMetrics } from '@pgmesh/host'
import type { ClusterState } from '@pgmesh/state'

/**
 * What the reconciler and its HA loop need of the host they run on, handed over at construction (js-libp2p's
 * components pattern): the daemon passes the host's parts, tests pass their own.
 */
export interface ReconcilerHost {
  hostId: string
  dataDir: string
  /** The cluster document: read, and watched for changes. */
  document: Pick<ClusterState, 'doc' | 'on'>
  databases: Pick<Databases, 'desired' | 'generations' | 'settle' | 'recover'>
  tasks: Pick<Tasks, 'get' | 'log' | 'settle' | 'settleParents'>
  operations: Pick<Operations, 'recordPrimary'>
  /** Node backups asked for, and their schedules' ticks (the backup runner); none: this host runs no backups. */
  backups?: Pick<Backups, 'requests' | 'tick' | 'started' | 'finished'>
  /** In-place node restores asked for (the restore runner); none: this host runs no restores. */
  restores?: Pick<Restores, 'pending' | 'started' | 'finished' | 'canceled'>
  /** The host's lifecycle: initialized (and its event), peers' changes (reachability, reports), leases once the mesh runs. */
  runtime: Pick<Host, 'initialized' | 'leases' | 'on' | 'beat'>
  health: Pick<HostHealth, 'clusterInstances' | 'reachableHosts' | 'lastHeardFrom'>
  metrics: Pick<HostMetrics, 'subscriptionsDown' | 'subscriptionApplyErrors'> & Partial<Pick<HostMetrics, 'reconcilePasses'>>
  /** This host was removed from the cluster (the document it holds says so): its instances go. */
  removedFromCluster?: () => boolean
  /** The superuser password for other hosts' instances over TCP (scram); none before the data key (or in a test). */
  superuserPassword?: () => string | undefined
}

/** A host's parts as the reconciler takes them. */
export function reconcilerHost (host: Host): ReconcilerHost {
  return {
    hostId: host.config.hostId,
    dataDir: host.config.dataDir,
    document: host.state,
    databases: host.document.databases,
    tasks: host.document.tasks,
    operations: host.document.operations,
    backups: host.document.backups,
    restores: host.document.restores,
    runtime: host,
    health: host.health,
    metrics: host.metrics,
    removedFromCluster: () => host.membership.removed,
    superuserPassword: () => host.superuserPassword()
  }
}
