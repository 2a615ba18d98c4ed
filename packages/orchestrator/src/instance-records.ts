import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type InstanceSpec, NotFoundError, TerminalError } from '@pgmesh/model'
import type { ScriptsDone } from './database-setup.js'
import { assertInstanceId, isInstanceId } from './instance-id.js'
import { InstanceLocks } from './instance-locks.js'
import type { InstanceStatus } from './orchestrator.js'
import { pickFreePort } from './ports.js'
import type { StandbyOf } from './postgres-config.js'

/** What every orchestrator remembers about an instance between calls and across daemon restarts. */
export interface InstanceRecord {
  instanceId: string
  /** Chosen once (fixed from the spec, or random for port 0) and kept. */
  port: number
  postgresMajor: number
  /** false after stopInstance: the instance stays down until it is started again. */
  desiredRunning: boolean
  /** Rendered settings last applied, to tell what a spec change touches. */
  appliedSettings: Record<string, string>
  /** Scripts are run once only: after the first successful run (or a first setup without them) they never run again. */
  scriptsDone: ScriptsDone
  /** A change that needs a restart was written but deferred; cleared by the next (re)start. */
  pendingRestart?: boolean
  /** Set while the instance is a streaming replica (cleared by promote). */
  standbyOf?: StandbyOf
}

/**
 * An orchestrator's instances on this host: a directory each under `instancesDir` (named by its id) holding its
 * record in `state.json`, one operation at a time per instance, and the ports of `port: 0` instances.
 */
export class InstanceRecords<R extends InstanceRecord> {
  /** Serialises the operations on one instance (API calls and supervision alike). */
  readonly locks = new InstanceLocks()
  /** Ports picked but maybe not yet in a record, so parallel creations never pick the same one. */
  private readonly reservedPorts = new Set<number>()

  constructor (readonly instancesDir: string) {}

  dir (instanceId: string): string {
    return join(this.instancesDir, instanceId)
  }

  async read (instanceId: string): Promise<R | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir(instanceId), 'state.json'), 'utf8')) as R
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  /** Written to a temporary file and renamed, so a crash never leaves a torn record. */
  async write (record: R): Promise<void> {
    const file = join(this.dir(record.instanceId), 'state.json')
    await mkdir(this.dir(record.instanceId), { recursive: true })
    await writeFile(`${file}.tmp`, JSON.stringify(record, null, 2) + '\n', { mode: 0o600 })
    await rename(`${file}.tmp`, file)
  }

  /** The ids of the instance directories, sorted. */
  async ids (): Promise<string[]> {
    try {
      const entries = await readdir(this.instancesDir, { withFileTypes: true })
      return entries.filter(e => e.isDirectory() && isInstanceId(e.name)).map(e => e.name).sort()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
  }

  /**
   * The record an ensureInstance works on: the previous one, or `fresh` for a new instance, with its port chosen and
   * running wanted. An instance's major version never changes.
   */
  async prepare (spec: InstanceSpec, previous: R | undefined, major: number, fresh: (base: InstanceRecord) => R): Promise<R> {
    if (previous !== undefined && previous.postgresMajor !== major) {
      throw new TerminalError(`instance ${spec.instanceId}: major version cannot change from ${previous.postgresMajor} to ${major}`)
    }
    const record = previous ?? fresh({
      instanceId: spec.instanceId,
      port: 0,
      postgresMajor: major,
      desiredRunning: true,
      appliedSettings: {},
      scriptsDone: { postInit: false, postDatabaseCreate: false }
    })
    record.port = await this.choosePort(spec, previous)
    record.desiredRunning = true
    return record
  }

  /**
   * The spec's fixed port; else the one chosen before; else a random one that no other instance here holds (stopped
   * ones included, their ports stay theirs) and that binds on every listen address now.
   */
  private async choosePort (spec: Pick<InstanceSpec, 'port' | 'listenAddresses'>, previous: R | undefined): Promise<number> {
    if (spec.port !== 0) return spec.port
    if (previous !== undefined && previous.port !== 0) return previous.port
    const taken = new Set(this.reservedPorts)
    for (const instanceId of await this.ids()) {
      const other = await this.read(instanceId)
      if (other !== undefined) taken.add(other.port)
    }
    const port = await pickFreePort(spec.listenAddresses.map(address => address === '*' ? '0.0.0.0' : address), taken)
    this.reservedPorts.add(port)
    return port
  }

  /** Forgets a removed instance's port reservation. */
  releasePort (port: number): void {
    this.reservedPorts.delete(port)
  }

  /** `operation` under the instance's lock on its record; NotFoundError without one (or when `exists` says so). */
  async withExisting<T> (
    instanceId: string, operation: (record: R) => Promise<T>, exists: (record: R) => boolean = () => true
  ): Promise<T> {
    assertInstanceId(instanceId)
    return await this.locks.run(instanceId, async () => {
      const record = await this.read(instanceId)
      if (record === undefined || !exists(record)) throw new NotFoundError(`instance ${instanceId} not found`)
      return await operation(record)
    })
  }

  /** An instance's status as `inspect` sees it, or undefined when it has no record. */
  async status (instanceId: string, inspect: (record: R) => Promise<InstanceStatus>): Promise<InstanceStatus | undefined> {
    assertInstanceId(instanceId)
    const record = await this.read(instanceId)
    return record === undefined ? undefined : await inspect(record)
  }

  async list (inspect: (record: R) => Promise<InstanceStatus>): Promise<InstanceStatus[]> {
    const all = await Promise.all((await this.ids()).map(async id => await this.status(id, inspect)))
    return all.filter((s): s is InstanceStatus => s !== undefined)
  }
}
