// What asks a reconciling host for passes (issue 18): a peer's idle heartbeats no longer do (they did, one pass per
// peer per second), while a peer going silent still does, when its silence passes the unreachable bound. Four
// reconciling daemons without databases: no Postgres starts, the passes are counted in pgmesh_reconcile_passes_total.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, hostStates, until, untilEveryHostKnowsEvery } from './helpers/cluster.js'

/** The daemons' defaults: heartbeats every second, a host silent for 4 s is unreachable, a periodic pass every 5 s. */
const UNREACHABLE_AFTER_MS = 4000
const RESYNC_MS = 5000

async function metrics (d: DaemonProcess): Promise<{ passes: Record<string, number>, heartbeatsReceived: number }> {
  const text = (await d.get<string>('/metrics')).body
  const passes: Record<string, number> = {}
  for (const m of text.matchAll(/^pgmesh_reconcile_passes_total\{trigger="(\w+)"\} (\S+)$/gm)) passes[m[1] ?? ''] = Number(m[2])
  const heartbeatsReceived = Number(/^pgmesh_heartbeats_received_total (\S+)$/m.exec(text)?.[1] ?? Number.NaN)
  return { passes, heartbeatsReceived }
}

const total = (passes: Record<string, number>): number => Object.values(passes).reduce((s, n) => s + n, 0)

describe('reconcile passes and heartbeats', () => {
  let cluster: TestCluster
  let daemons: DaemonProcess[]

  beforeAll(async () => {
    cluster = await TestCluster.create('reconcile-triggers')
    daemons = await cluster.initAndJoin(4)
    await untilEveryHostKnowsEvery(daemons)
    await until('every host healthy everywhere', async () => {
      for (const d of daemons) if (Object.values(await hostStates(d)).some(s => s !== 'healthy')) return false
      return true
    }, 60_000, 250)
  }, 180_000)

  afterAll(async () => { await cluster?.destroy() })

  it('runs about one pass per periodic interval while three peers beat every second, none of them for a heartbeat', async () => {
    const h1 = daemons[0] as DaemonProcess
    const windowMs = 10_000
    const before = await metrics(h1)
    await new Promise(resolve => setTimeout(resolve, windowMs))
    const after = await metrics(h1)
    const heartbeats = after.heartbeatsReceived - before.heartbeatsReceived
    const passes = total(after.passes) - total(before.passes)
    const byPeers = (after.passes.peer ?? 0) - (before.passes.peer ?? 0)
    const detail = `${passes} passes (${JSON.stringify(after.passes)}) for ${heartbeats} heartbeats received`
    // Heartbeats flowed: 3 peers x ~10 s (a loaded machine delays some).
    expect(heartbeats, detail).toBeGreaterThanOrEqual(20)
    // One per period (2 in 10 s) plus slack for a peer's hiccup; a pass per heartbeat would be ~30.
    expect(passes, detail).toBeLessThanOrEqual(windowMs / RESYNC_MS + 3)
    expect(byPeers, detail).toBeLessThanOrEqual(2)
  })

  it('runs a pass as soon as a peer has been silent for the unreachable bound', async () => {
    const [h1, , , h4] = daemons as [DaemonProcess, DaemonProcess, DaemonProcess, DaemonProcess]
    const before = (await metrics(h1)).passes.peer ?? 0
    const killedAt = Date.now()
    await h4.stop('SIGKILL')
    const passAfterMs = await until('a pass asked for by host-4 going silent', async () => {
      const peer = (await metrics(h1)).passes.peer ?? 0
      return peer > before ? Date.now() - killedAt : undefined
    }, 15_000, 50)
    // The pass's input changed at that moment: host-1 sees host-4 unreachable.
    expect((await hostStates(h1))['host-4']).toBe('unreachable')
    // Its last heartbeat came at most a second before the kill: unreachable 3-4 s after the kill (earlier if a loaded machine delayed it), then a pass at once
    // (not at the next periodic pass, up to 5 s later). 1.5 s of slack for a loaded machine.
    expect(passAfterMs).toBeGreaterThanOrEqual(UNREACHABLE_AFTER_MS - 2000)
    expect(passAfterMs).toBeLessThan(UNREACHABLE_AFTER_MS + 1500)
  })
})
