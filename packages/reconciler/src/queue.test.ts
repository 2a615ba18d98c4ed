import { describe, expect, it } from 'vitest'
import { InstanceQueues } from './queue.js'

function gate (): { wait: Promise<void>, open: () => void } {
  let open!: () => void
  const wait = new Promise<void>(resolve => { open = resolve })
  return { wait, open }
}

describe('InstanceQueues', () => {
  it('runs one job per instance at a time, in order; instances do not wait for each other', async () => {
    const q = new InstanceQueues()
    const order: string[] = []
    const g = gate()
    const a1 = q.run('a', 'normal', 'a1', async () => { await g.wait; order.push('a1') })
    const a2 = q.run('a', 'normal', 'a2', async () => { order.push('a2') })
    await q.run('b', 'normal', 'b1', async () => { order.push('b1') })
    expect(q.jobs('a')).toEqual(['a1', 'a2'])
    g.open()
    await Promise.all([a1, a2])
    expect(order).toEqual(['b1', 'a1', 'a2'])
    await q.idle()
    expect(q.jobs('a')).toEqual([])
  })

  it('puts high-priority jobs ahead of queued normal ones, after the running one', async () => {
    const q = new InstanceQueues()
    const order: string[] = []
    const g = gate()
    const jobs = [
      q.run('a', 'normal', 'ensure', async () => { await g.wait; order.push('ensure') }),
      q.run('a', 'normal', 'replication', async () => { order.push('replication') }),
      q.run('a', 'high', 'unfence', async () => { order.push('unfence') }),
      q.run('a', 'high', 'hand-over', async () => { order.push('hand-over') })
    ]
    expect(q.urgent('a')).toBe(true)
    g.open()
    await Promise.all(jobs)
    expect(order).toEqual(['ensure', 'unfence', 'hand-over', 'replication'])
    expect(q.urgent('a')).toBe(false)
  })

  it('starts an immediate job (a fence) at once, even while a job runs; later jobs wait for it', async () => {
    const q = new InstanceQueues()
    const order: string[] = []
    const slow = gate()
    const fence = gate()
    const ensure = q.run('a', 'normal', 'ensure', async () => { await slow.wait; order.push('ensure done') })
    const queued = q.run('a', 'normal', 'restart', async () => { order.push('restart') })
    const fenced = q.run('a', 'immediate', 'fence', async () => { order.push('fence started'); await fence.wait; order.push('fence done') })
    await new Promise(resolve => setTimeout(resolve, 5))
    expect(order).toEqual(['fence started'])
    slow.open()
    await ensure
    expect(order).toEqual(['fence started', 'ensure done'])
    fence.open()
    await Promise.all([fenced, queued])
    expect(order).toEqual(['fence started', 'ensure done', 'fence done', 'restart'])
  })

  it('passes results and errors through', async () => {
    const q = new InstanceQueues()
    await expect(q.run('a', 'normal', 'x', async () => 42)).resolves.toBe(42)
    await expect(q.run('a', 'normal', 'y', async () => { throw new Error('boom') })).rejects.toThrow('boom')
    await expect(q.run('a', 'normal', 'z', async () => 'after')).resolves.toBe('after')
  })
})
