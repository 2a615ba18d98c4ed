import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { basebackupArgs, nextStandbyOf } from './standby.js'

const log = pino({ level: 'silent' })
const primary = { host: '10.0.0.1', port: 6432 }

describe('whom an instance streams from', () => {
  it('a new instance with a primary becomes its replica over a slot named after itself; without one it is a primary', () => {
    expect(nextStandbyOf({ instanceId: 'db-n1-host2', primary }, true, undefined, log))
      .toEqual({ host: '10.0.0.1', port: 6432, slotName: 'pgmesh_db_n1_host2' })
    expect(nextStandbyOf({ instanceId: 'db-n1-host2' }, true, undefined, log)).toBeUndefined()
  })

  it('an existing replica follows a primary that moved and keeps its slot name', () => {
    const current = { host: '10.0.0.1', port: 6432, slotName: 'pgmesh_old' }
    expect(nextStandbyOf({ instanceId: 'db-n1-host2', primary: { host: '10.0.0.3', port: 7000 } }, false, current, log))
      .toEqual({ host: '10.0.0.3', port: 7000, slotName: 'pgmesh_old' })
    expect(nextStandbyOf({ instanceId: 'db-n1-host2' }, false, current, log)).toBe(current)
  })

  it('a primary is never demoted by a spec that names a primary', () => {
    expect(nextStandbyOf({ instanceId: 'db-n1-host2', primary }, false, undefined, log)).toBeUndefined()
  })
})

describe('pg_basebackup arguments', () => {
  const standbyOf = { ...primary, slotName: 'pgmesh_db_n1_host2' }

  it('streams WAL over the slot, as the control plane superuser without a password, creating the slot only if missing', () => {
    expect(basebackupArgs(standbyOf, '/pgdata', false)).toEqual([
      '-h', '10.0.0.1', '-p', '6432', '-U', 'pgmesh', '-D', '/pgdata', '--no-password',
      '-X', 'stream', '-c', 'fast', '-S', 'pgmesh_db_n1_host2', '-C'
    ])
    expect(basebackupArgs(standbyOf, '/pgdata', true)).not.toContain('-C')
    expect(basebackupArgs(standbyOf, '/pgdata', true)).not.toContain('-R')
  })
})
