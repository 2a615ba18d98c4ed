import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { tightenDataDir } from './data-dir.js'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pgmesh-datadir-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777

it('tightens a data dir an earlier version left world-readable, and leaves the instances to the orchestrator', async () => {
  await chmod(dir, 0o755)
  for (const sub of ['state', 'tasks', 'reconciler', 'instances']) await mkdir(join(dir, sub), { mode: 0o755 })
  const files = ['state/doc.log', 'state/doc.snapshot', 'tasks/t.jsonl', 'reconciler/applied.json', 'cluster.key', 'peer.key', 'instances/record.json']
  for (const file of files) await writeFile(join(dir, file), 'x', { mode: 0o644 })
  await chmod(join(dir, 'cluster.key'), 0o644)

  await tightenDataDir(dir, pino({ level: 'silent' }))

  expect(await modeOf(dir)).toBe(0o711)
  for (const sub of ['state', 'tasks', 'reconciler']) expect(await modeOf(join(dir, sub)), sub).toBe(0o700)
  for (const file of files.slice(0, -1)) expect(await modeOf(join(dir, file)), file).toBe(0o600)
  expect(await modeOf(join(dir, 'instances'))).toBe(0o755)
  expect(await modeOf(join(dir, 'instances/record.json'))).toBe(0o644)
})
