// Announced task log entries: a host speaks for itself only, and malformed messages are dropped.
import { describe, expect, it } from 'vitest'
import { acceptTaskLogMessage } from './task-log-protocol.js'

const bound: Record<string, string> = { P2: 'host-2', P3: 'host-3' }
const authorize = (peer: string, hostId: string): boolean => bound[peer] === hostId
const encode = (message: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(message))
const entry = { id: '0190-a', timestamp: '2026-11-30T22:00:00Z', message: 'creating instance', host_id: 'host-2' }

describe('acceptTaskLogMessage', () => {
  it("accepts an entry signed by its host's peer and refuses one another peer signed or nobody signed", () => {
    const refused: string[] = []
    const onRefused = (peer: string, hostId: string): void => { refused.push(`${peer}:${hostId}`) }
    expect(acceptTaskLogMessage(encode({ task_id: 't1', entry }), 'P2', authorize, onRefused)).toEqual({ taskId: 't1', entry })
    expect(acceptTaskLogMessage(encode({ task_id: 't1', entry }), 'P3', authorize, onRefused)).toBeUndefined()
    expect(acceptTaskLogMessage(encode({ task_id: 't1', entry }), '', authorize, onRefused)).toBeUndefined()
    expect(refused).toEqual(['P3:host-2', ':host-2'])
  })

  it('drops what is not an entry', () => {
    const onRefused = (): void => { throw new Error('not a refusal: malformed') }
    expect(acceptTaskLogMessage(new TextEncoder().encode('{'), 'P2', authorize, onRefused)).toBeUndefined()
    expect(acceptTaskLogMessage(encode(null), 'P2', authorize, onRefused)).toBeUndefined()
    expect(acceptTaskLogMessage(encode({ task_id: 't1', entry: { ...entry, message: 3 } }), 'P2', authorize, onRefused)).toBeUndefined()
    expect(acceptTaskLogMessage(encode({ entry }), 'P2', authorize, onRefused)).toBeUndefined()
  })
})
