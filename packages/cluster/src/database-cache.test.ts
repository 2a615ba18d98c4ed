import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClusterState } from '@pgmesh/state'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DatabaseCache } from './database-cache.js'

const logger = pino({ level: 'silent' })

/** An entry as a reader derives it: the database's task and that task's status, read when built. */
interface Entry { task: string, status: string | undefined }

describe('DatabaseCache', () => {
  let dir: string
  let state: ClusterState
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgmesh-dbcache-'))
    state = await ClusterState.open({ dir, hostId: 'h1', logger })
    await state.initialize('c1')
  })
  afterEach(async () => {
    await state.close()
    await rm(dir, { recursive: true, force: true })
  })

  function cache (): { cache: DatabaseCache<Entry>, builds: string[] } {
    const builds: string[] = []
    const built = new DatabaseCache<Entry>(state, id => {
      builds.push(id)
      const task = (state.doc.databases?.[id] as { task_id?: string } | undefined)?.task_id
      return task === undefined ? undefined : { task, status: (state.doc.tasks?.[task] as { status?: string } | undefined)?.status }
    }, e => e.task)
    return { cache: built, builds }
  }

  const setTask = async (id: string, task: string): Promise<void> => {
    await state.change({ op: 'test' }, d => {
      (d.databases as Record<string, unknown>)[id] = { task_id: task }
      ;(d.tasks as Record<string, unknown>)[task] = { status: 'pending' }
    })
  }
  const setStatus = async (task: string, status: string): Promise<void> => {
    await state.change({ op: 'test' }, d => { (d.tasks[task] as { status: string }).status = status })
  }

  it('rebuilds only the database whose current task changed, also after its task was replaced', async () => {
    await setTask('a', 'ta1')
    await setTask('b', 'tb1')
    const { cache: c, builds } = cache()
    expect(c.all().map(e => e.status)).toEqual(['pending', 'pending'])
    builds.length = 0

    await setStatus('ta1', 'completed')
    expect(c.get('a')?.status).toBe('completed')
    expect(c.get('b')?.status).toBe('pending')
    expect(builds).toEqual(['a'])

    // a's task replaced: its old task no longer concerns it, the new one does.
    await setTask('a', 'ta2')
    expect(c.get('a')?.task).toBe('ta2')
    builds.length = 0
    await setStatus('ta1', 'failed')
    expect(c.all().map(e => e.status)).toEqual(['pending', 'pending'])
    expect(builds).toEqual([])
    await setStatus('ta2', 'running')
    expect(c.get('a')?.status).toBe('running')
    expect(builds).toEqual(['a'])
  })

  it('rebuilds, when a host joins or leaves, only the databases whose spec names it; a host record\'s update none', async () => {
    await state.change({ op: 'test' }, d => {
      d.hosts['host-1'] = { id: 'host-1', api_url: 'http://a' } as never
      for (const [id, hosts] of [['a', ['host-1']], ['b', ['host-2']], ['c', ['host-1', 'host-3']]] as const) {
        (d.databases as Record<string, unknown>)[id] = { task_id: `t${id}`, hosts }
      }
    })
    const builds: string[] = []
    // An entry reads the known hosts, as validation does.
    const c = new DatabaseCache<{ known: string[], hosts: string[] }>(state, id => {
      builds.push(id)
      const hosts = [...(state.doc.databases?.[id] as unknown as { hosts: string[] }).hosts]
      return { hosts, known: hosts.filter(h => state.doc.hosts?.[h] !== undefined) }
    }, e => `t${e.hosts.join()}`, e => e.hosts)
    expect(c.all().map(e => e.known)).toEqual([['host-1'], [], ['host-1']])
    builds.length = 0

    await state.change({ op: 'test' }, d => { (d.hosts['host-1'] as unknown as { api_url: string }).api_url = 'http://b' })
    expect(c.all()).toHaveLength(3)
    expect(builds).toEqual([])

    await state.change({ op: 'test' }, d => { d.hosts['host-2'] = { id: 'host-2' } as never })
    expect(c.all().map(e => e.known)).toEqual([['host-1'], ['host-2'], ['host-1']])
    expect(builds).toEqual(['b'])
    builds.length = 0

    await state.change({ op: 'test' }, d => { delete d.hosts['host-1'] })
    expect(c.all().map(e => e.known)).toEqual([[], ['host-2'], []])
    expect(builds.sort()).toEqual(['a', 'c'])
  })
})
