import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { isTerminalTaskStatus, type ObservedInstance, type Task, type VersionManifest } from '@pgmesh/model'
import { type ClusterState, type Doc, logicalView, plainStrings, startGeneration } from '@pgmesh/state'
import { ApiTokens, JoinTokens } from './access-tokens.js'
import type { DataKey } from './data-key.js'
import { Databases } from './databases.js'
import type { ObservedSnapshot } from './observed-cluster.js'
import { Backups } from './backups.js'
import { Restores } from './restores.js'
import { Operations } from './operations.js'
import { type TaskLogEntry, TaskLogStore } from './task-log.js'
import { pruneFinishedTasks, TASK_RETENTION_MS, TaskArchive } from './task-archive.js'
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
  readonly taskArchive: TaskArchive
  readonly tasks: Tasks
  readonly databases: Databases
  readonly operations: Operations
  readonly backups: Backups
  readonly restores: Restores
  readonly apiTokens: ApiTokens
  readonly joinTokens: JoinTokens
  private readonly state: ClusterState

  constructor (deps: ClusterDocumentDeps) {
    this.state = deps.state
    this.taskLogs = new TaskLogStore(deps.taskLogDir, deps.hostId)
    this.taskArchive = new TaskArchive(join(deps.taskLogDir, 'archived-tasks.jsonl'))
    this.tasks = new Tasks(deps.hostId, deps.state, this.taskLogs, deps.remoteTaskLogs, this.taskArchive)
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

  /**
   * The next generation's first document from `frontier` (see @pgmesh/state's README, "History and generations"):
   * tasks finished more than `retentionMs` (default `TASK_RETENTION_MS`) before the frontier leave the document.
   */
  static startGeneration (doc: Doc, frontier: A.Heads, retentionMs = TASK_RETENTION_MS): Doc {
    return startGeneration(doc, frontier, (content, at) => { pruneFinishedTasks(content, at, retentionMs) })
  }

  /**
   * Moves this host to a later generation: first archives the finished tasks that generation's compaction moved out
   * of the document, then enters it. Which tasks moved is read from the genesis itself (finished tasks at the
   * boundary that it does not hold), not recomputed, so it does not depend on this host's retention setting.
   * Returns how many of this host's own changes were replayed; throws `GenerationGapError` as the state does.
   */
  async enterGeneration (next: Doc): Promise<number> {
    const old = this.state.doc
    const boundary = next.generation?.frontiers.find(f => f.number === (old.generation?.number ?? 1) + 1)
    if (boundary !== undefined && this.state.hasHeads(boundary.heads)) {
      const atBoundary = (this.state.readMerged(['tasks'], boundary.heads)?.value ?? {}) as Record<string, Task>
      const genesis = A.getChangesMetaSince(next, []).find(c => c.deps.length === 0)
      const kept = genesis === undefined ? {} : logicalView(plainStrings(A.view(next, [genesis.hash]))).tasks ?? {}
      this.taskArchive.add(Object.values(atBoundary).filter(t => isTerminalTaskStatus(t.status) && !(t.task_id in kept)))
    }
    return await this.state.enterGeneration(next)
  }
}
