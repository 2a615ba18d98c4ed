import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { AppliedInstance } from './types.js'

/** What this host last applied to each of its instances; survives daemon restarts so re-planning stays empty. */
export class AppliedStore {
  private readonly records = new Map<string, AppliedInstance>()
  private constructor (private readonly file: string) {}

  static async open (file: string): Promise<AppliedStore> {
    const store = new AppliedStore(file)
    try {
      for (const r of JSON.parse(await readFile(file, 'utf8')) as AppliedInstance[]) store.records.set(r.instanceId, r)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    return store
  }

  all (): AppliedInstance[] { return [...this.records.values()] }
  get (id: string): AppliedInstance | undefined { return this.records.get(id) }

  async set (record: AppliedInstance): Promise<void> {
    this.records.set(record.instanceId, record)
    await this.save()
  }

  async delete (id: string): Promise<void> {
    if (this.records.delete(id)) await this.save()
  }

  private async save (): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 })
    const tmp = `${this.file}.tmp`
    await writeFile(tmp, JSON.stringify(this.all(), null, 1), { flush: true, mode: 0o600 })
    await rename(tmp, this.file)
  }
}
