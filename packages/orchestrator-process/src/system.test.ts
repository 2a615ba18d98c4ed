import { describe, expect, it } from 'vitest'
import { streamCommand } from './system.js'

describe('streamCommand', () => {
  it('hands over each line as it comes, and fails with the last ones', async () => {
    const lines: string[] = []
    await streamCommand('/bin/sh', ['-c', 'echo one; echo two >&2; echo three'], { runAs: undefined, cwd: '/', onLine: l => lines.push(l) })
    expect(lines.sort()).toEqual(['one', 'three', 'two'])
    await expect(streamCommand('/bin/sh', ['-c', 'echo bad; exit 3'], { runAs: undefined, cwd: '/', onLine: () => {} })).rejects.toThrow('exited with 3: bad')
  })

  it('stops the command when aborted', async () => {
    const stop = new AbortController()
    const started = Date.now()
    const run = streamCommand('/bin/sleep', ['30'], { runAs: undefined, cwd: '/', onLine: () => {}, signal: stop.signal })
    setTimeout(() => { stop.abort() }, 100)
    await expect(run).rejects.toThrow('canceled')
    expect(Date.now() - started).toBeLessThan(5000)
  })
})
