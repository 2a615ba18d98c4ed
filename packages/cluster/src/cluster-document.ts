import type { ObservedInstance, VersionManifest } from '@pgmesh/model'
import type { ClusterState } from '@pgmesh/state'
import { ApiTokens, JoinTokens } from './access-tokens.js'
import type { DataKey } from './data-key.js'
import { Databases } from './databases.js'
import type { ObservedSnapshot } from './observed-cluster.js'
import { Backups } from './backups.js'
import { Restores } from './restores.js'
import { Operations } from './operations.js'
import { type TaskLogEntry, TaskLogStore } from './task-log.js'
import { Tasks } from './tasks.js'

/** What the document logic needs from the host it runs on: nothing of the mesh but these answers. */
export interface ClusterDocumentDeps {
  hostId: string
  state: ClusterState
  /** Where this host keeps the log lines of the work it did (`<data-dir>/tasks`). */
  taskLogDir: string
  /** Log entries of a task held by the other reachable hosts. */
  remoteTaskLogs: (taskId: string) => Promise<TaskLogEntry[]>
  /** Every reachable host's reported instances, this host's included, versioned. */
  observed: () => ObservedSnapshot
  /** Hosts whose heartbeats are current (this one included). */
  reachableHosts: () => ReadonlySet<string>
  /** The Postgres version new databases get when their spec names none. */
  defaultPostgresVersion: string | undefined
  /** The cluster's data key (seals the spec's secrets), once this host has one. */
  dataKey: () => DataKey | undefined
  /** The version manifest this host checks upgrades against; default the embedded one. */
  manifest?: () => VersionManifest
}

/**
 * The cluster document's logic on one host: databases, their instance and node operations, and tasks with their
 * logs. Everything it writes goes through the document, so every host's copy of it agrees once they converge.
 */
export class ClusterDocument {
  readonly taskLogs: TaskLogStore
  readonly tasks: Tasks
  readonly databases: Databases
  readonly operations: Operations
  readonly backups: Backups
  readonly restores: Restores
  readonly apiTokens: ApiTokens
  readonly joinTokens: JoinTokens

  constructor (deps: ClusterDocumentDeps) {
    this.taskLogs = new TaskLogStore(deps.taskLogDir, deps.hostId)
    this.tasks = new Tasks(deps.hostId, deps.state, this.taskLogs, deps.remoteTaskLogs)
    this.databases = new Databases({
      hostId: deps.hostId,
      state: deps.state,
      tasks: this.tasks,
      knownHostIds: () => new Set(Object.keys(deps.state.doc.hosts ?? {})),
      observed: deps.observed,
      defaultPostgresVersion: deps.defaultPostgresVersion,
      dataKey: deps.dataKey,
      ...(deps.manifest === undefined ? {} : { manifest: deps.manifest })
    })
    this.apiTokens = new ApiTokens(deps.state)
    this.joinTokens = new JoinTokens(deps.state, deps.hostId)
    this.operations = new Operations({
      state: deps.state,
      tasks: this.tasks,
      observedInstances: (): readonly ObservedInstance[] => deps.observed().instances,
      reachableHosts: deps.reachableHosts
    })
    this.backups = new Backups({ state: deps.state, tasks: this.tasks, observedInstances: (): readonly ObservedInstance[] => deps.observed().instances })
    this.restores = new Restores({ state: deps.state, tasks: this.tasks, databases: this.databases, dataKey: deps.dataKey })
  }
}
