import { ApiRequestError, type Attempt, UnreachableError } from './errors.js'
import { send, type TlsOptions, TransportError, type TransportOptions } from './transport.js'
import type {
  ApiTask, ApiToken, BackupBody, Cluster, CreateDatabaseBody, Database, DatabaseHistory, DatabaseSummary, FailoverBody, Host, JoinToken, RemoveHostResponse, RestoreBody, RestoreResponse,
  SwitchoverBody, TaskListQuery, TaskLog, TaskRef, UpdateDatabaseBody, VersionInfo
} from './types.js'

export interface ClientOptions {
  /** Base URLs of any hosts of the cluster, tried in order until one answers. */
  servers: readonly string[]
  connectTimeoutMs?: number
  requestTimeoutMs?: number
  tls?: TlsOptions
  /** A bearer token of the API (pgmesh's viewer or operator tokens). */
  token?: string
}

type Query = Record<string, string | number | boolean | undefined>

/**
 * A typed client of the v1 API over several hosts. Every host serves the same API, so a request goes to the first
 * server that answers: one that refuses or times out the connection, or answers 503 (draining), is skipped. The
 * server that answered goes first for the next requests, so following a task keeps to one host while it lives and
 * moves on when it dies. A request that changes something is sent to another server only when it never reached the
 * previous one.
 */
export class PgmeshClient {
  private readonly servers: string[]
  private readonly transport: TransportOptions

  constructor (options: ClientOptions) {
    if (options.servers.length === 0) throw new Error('no server given')
    this.servers = options.servers.map(s => s.replace(/\/+$/, ''))
    for (const s of this.servers) {
      const url = new URL(s)
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${s}: only http:// and https:// servers`)
    }
    this.transport = { connectTimeoutMs: options.connectTimeoutMs ?? 3000, requestTimeoutMs: options.requestTimeoutMs ?? 60_000, ...(options.tls === undefined ? {} : { tls: options.tls }), ...(options.token === undefined ? {} : { token: options.token }) }
  }

  /** The server tried first (the last one that answered). */
  get server (): string { return this.servers[0] ?? '' }

  async request<T> (method: string, path: string, options: { query?: Query, body?: unknown } = {}): Promise<T> {
    const search = new URLSearchParams()
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) search.append(k, String(v))
    const target = search.size === 0 ? path : `${path}?${search.toString()}`
    const body = options.body === undefined ? undefined : JSON.stringify(options.body)
    const attempts: Attempt[] = []
    for (const server of [...this.servers]) {
      let res
      try {
        res = await send(new URL(server + target), method, body, this.transport)
      } catch (err) {
        if (!(err instanceof TransportError)) throw err
        attempts.push({ server, error: err.message })
        if (err.sent && method !== 'GET') throw new UnreachableError(attempts, true)
        continue
      }
      let parsed: unknown
      try { parsed = res.body === '' ? undefined : JSON.parse(res.body) } catch { parsed = undefined }
      const error = parsed as { name?: unknown, message?: unknown } | undefined
      if (res.status === 503) {
        attempts.push({ server, error: `503 ${typeof error?.message === 'string' ? error.message : 'unavailable'}` })
        continue
      }
      this.prefer(server)
      if (res.status >= 400) {
        const name = typeof error?.name === 'string' ? error.name : `http_${res.status}`
        const message = typeof error?.message === 'string' ? error.message : res.body.slice(0, 500)
        throw new ApiRequestError(res.status, name, message, server, method, path)
      }
      return parsed as T
    }
    throw new UnreachableError(attempts)
  }

  private prefer (server: string): void {
    const i = this.servers.indexOf(server)
    if (i > 0) this.servers.unshift(...this.servers.splice(i, 1))
  }

  // ---- system and cluster -------------------------------------------------------------------------------------------

  async version (): Promise<VersionInfo> { return await this.request('GET', '/v1/version') }
  async initCluster (clusterId?: string): Promise<JoinToken> { return await this.request('GET', '/v1/cluster/init', { query: { cluster_id: clusterId } }) }
  async joinCluster (token: JoinToken): Promise<void> { await this.request('POST', '/v1/cluster/join', { body: token }) }
  async joinToken (ttl?: string): Promise<JoinToken> { return await this.request('GET', '/v1/cluster/join-token', { query: { ttl } }) }
  async revokeJoinTokens (): Promise<{ revoked: number }> { return await this.request('DELETE', '/v1/cluster/join-tokens') }
  async createToken (body: { name: string, role: 'viewer' | 'operator', expires_in?: string }): Promise<ApiToken & { token: string }> { return await this.request('POST', '/v1/tokens', { body }) }
  async tokens (): Promise<ApiToken[]> { return (await this.request<{ tokens: ApiToken[] }>('GET', '/v1/tokens')).tokens }
  async revokeToken (id: string): Promise<void> { await this.request('DELETE', `/v1/tokens/${enc(id)}`) }
  async cluster (): Promise<Cluster> { return await this.request('GET', '/v1/cluster') }
  async hosts (): Promise<Host[]> { return (await this.request<{ hosts: Host[] }>('GET', '/v1/hosts')).hosts }
  async host (id: string): Promise<Host> { return await this.request('GET', `/v1/hosts/${enc(id)}`) }
  async removeHost (id: string, force = false): Promise<RemoveHostResponse> {
    return await this.request('DELETE', `/v1/hosts/${enc(id)}`, { query: { force: force ? 'true' : undefined } })
  }

  // ---- databases ----------------------------------------------------------------------------------------------------

  async databases (options: { includeUpgrades?: boolean } = {}): Promise<DatabaseSummary[]> {
    return (await this.request<{ databases: DatabaseSummary[] }>('GET', '/v1/databases', { query: { include: options.includeUpgrades === true ? 'available_upgrades' : undefined } })).databases
  }

  async database (id: string, options: { includeUpgrades?: boolean } = {}): Promise<Database> {
    return await this.request('GET', `/v1/databases/${enc(id)}`, { query: { include: options.includeUpgrades === true ? 'available_upgrades' : undefined } })
  }

  /** Moves the database to a newer image of the version manifest (an update with task type `upgrade`). */
  async upgradeDatabase (id: string, image: string): Promise<{ task: ApiTask, database: Database }> {
    return await this.request('POST', `/v1/databases/${enc(id)}/upgrade`, { body: { image } })
  }
  async createDatabase (body: CreateDatabaseBody): Promise<{ task: ApiTask, database: Database }> {
    return await this.request('POST', '/v1/databases', { body })
  }

  async updateDatabase (id: string, body: UpdateDatabaseBody, options: { forceUpdate?: boolean } = {}): Promise<{ task: ApiTask, database: Database }> {
    return await this.request('POST', `/v1/databases/${enc(id)}`, { body, query: { force_update: options.forceUpdate === true ? 'true' : undefined } })
  }

  async deleteDatabase (id: string, options: { force?: boolean } = {}): Promise<{ task: ApiTask }> {
    return await this.request('DELETE', `/v1/databases/${enc(id)}`, { query: { force: options.force === true ? 'true' : undefined } })
  }

  /** pgmesh: every change to the database; with from and/or to, what changed between those versions. */
  async history (id: string, range: { from?: string, to?: string } = {}): Promise<DatabaseHistory> {
    return await this.request('GET', `/v1/databases/${enc(id)}/history`, { query: range })
  }

  // ---- operations ---------------------------------------------------------------------------------------------------

  async switchover (databaseId: string, node: string, body: SwitchoverBody = {}): Promise<{ task: ApiTask }> {
    return await this.request('POST', `/v1/databases/${enc(databaseId)}/nodes/${enc(node)}/switchover`, { body })
  }

  async failover (databaseId: string, node: string, body: FailoverBody = {}): Promise<{ task: ApiTask }> {
    return await this.request('POST', `/v1/databases/${enc(databaseId)}/nodes/${enc(node)}/failover`, { body })
  }

  /** A pgBackRest backup of the node, run on its primary (a `node_backup` task). */
  async backupNode (databaseId: string, node: string, body: BackupBody): Promise<{ task: ApiTask }> {
    return await this.request('POST', `/v1/databases/${enc(databaseId)}/nodes/${enc(node)}/backups`, { body })
  }

  /** In-place restore of the target nodes (default every node) from a pgBackRest repository. */
  async restoreDatabase (databaseId: string, body: RestoreBody, options: { force?: boolean } = {}): Promise<RestoreResponse> {
    return await this.request('POST', `/v1/databases/${enc(databaseId)}/restore`, { body, query: { force: options.force === true ? 'true' : undefined } })
  }

  async restartInstance (databaseId: string, instanceId: string, body: { scheduled_at?: string } = {}): Promise<{ task: ApiTask }> {
    return await this.request('POST', `/v1/databases/${enc(databaseId)}/instances/${enc(instanceId)}/restart`, { body })
  }

  async stopInstance (databaseId: string, instanceId: string, options: { force?: boolean } = {}): Promise<{ task: ApiTask }> {
    return await this.request('POST', `/v1/databases/${enc(databaseId)}/instances/${enc(instanceId)}/stop-instance`, { query: { force: options.force === true ? 'true' : undefined } })
  }

  async startInstance (databaseId: string, instanceId: string, options: { force?: boolean } = {}): Promise<{ task: ApiTask }> {
    return await this.request('POST', `/v1/databases/${enc(databaseId)}/instances/${enc(instanceId)}/start-instance`, { query: { force: options.force === true ? 'true' : undefined } })
  }

  // ---- tasks --------------------------------------------------------------------------------------------------------

  /** Tasks of every scope, or of one scope (and entity), newest first unless asked otherwise. */
  async tasks (filter: { scope?: 'database' | 'host', entityId?: string } & TaskListQuery = {}): Promise<ApiTask[]> {
    const query = { scope: filter.scope, entity_id: filter.entityId, ...listQuery(filter) }
    const path = filter.scope === 'database' && filter.entityId !== undefined
      ? `/v1/databases/${enc(filter.entityId)}/tasks`
      : filter.scope === 'host' && filter.entityId !== undefined ? `/v1/hosts/${enc(filter.entityId)}/tasks` : '/v1/tasks'
    const q = path === '/v1/tasks' ? query : listQuery(filter)
    return (await this.request<{ tasks: ApiTask[] }>('GET', path, { query: q })).tasks
  }

  async task (ref: TaskRef): Promise<ApiTask> { return await this.request('GET', taskPath(ref)) }

  async taskLog (ref: TaskRef, options: { afterEntryId?: string, limit?: number } = {}): Promise<TaskLog> {
    return await this.request('GET', `${taskPath(ref)}/${ref.scope === 'database' ? 'log' : 'logs'}`, { query: { after_entry_id: options.afterEntryId, limit: options.limit } })
  }

  /** The anchor cancels with a GET, of database tasks only. */
  async cancelTask (databaseId: string, taskId: string): Promise<ApiTask> {
    return await this.request('GET', `/v1/databases/${enc(databaseId)}/tasks/${enc(taskId)}/cancel`)
  }

  /** Where a task lives, found by id alone: pages through every scope's tasks, newest first. */
  async findTask (taskId: string): Promise<ApiTask | undefined> {
    let after: string | undefined
    for (;;) {
      const page = await this.tasks({ limit: 1000, ...(after === undefined ? {} : { afterTaskId: after }) })
      const found = page.find(t => t.task_id === taskId)
      if (found !== undefined || page.length < 1000) return found
      after = page.at(-1)?.task_id
    }
  }
}

function enc (segment: string): string {
  return encodeURIComponent(segment)
}

function listQuery (q: TaskListQuery): Query {
  return { after_task_id: q.afterTaskId, limit: q.limit, sort_order: q.sortOrder }
}

function taskPath (ref: TaskRef): string {
  return ref.scope === 'database'
    ? `/v1/databases/${enc(ref.entityId)}/tasks/${enc(ref.taskId)}`
    : `/v1/hosts/${enc(ref.entityId)}/tasks/${enc(ref.taskId)}`
}
