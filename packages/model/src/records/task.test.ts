import { describe, expect, it } from 'vitest'
import { type Task, type TaskStatus, transitionTask } from './task.js'

const task = (status: TaskStatus): Task => ({ scope: 'database', entity_id: 'db', task_id: 't', created_at: '2026-11-30T00:00:00Z', type: 'update', status })

describe('transitionTask', () => {
  it('moves an open task forward, stamping completed_at and the error on a terminal status', () => {
    const t = task('pending')
    expect(transitionTask(t, 'running')).toBe(true)
    expect(t.completed_at).toBeUndefined()
    expect(transitionTask(t, 'failed', { error: 'boom', at: '2026-11-30T00:00:05Z' })).toBe(true)
    expect(t).toMatchObject({ status: 'failed', error: 'boom', completed_at: '2026-11-30T00:00:05Z' })
  })

  it('never moves a finished task, so a late or repeated settle changes nothing', () => {
    for (const done of ['completed', 'failed', 'canceled'] as const) {
      for (const to of ['pending', 'running', 'completed', 'failed', 'canceling', 'canceled'] as const) {
        const t = task(done)
        expect(transitionTask(t, to, { error: 'late' }), `${done} -> ${to}`).toBe(false)
        expect(t).toEqual(task(done))
      }
    }
  })

  it('cancels through canceling, and never goes back to pending', () => {
    const t = task('running')
    expect(transitionTask(t, 'canceling')).toBe(true)
    expect(transitionTask(t, 'running')).toBe(false)
    expect(transitionTask(t, 'pending')).toBe(false)
    expect(transitionTask(t, 'canceled')).toBe(true)
    expect(t.completed_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  })
})
