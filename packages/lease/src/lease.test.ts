import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClusterKey, Mesh, loadOrCreatePeerKey } from '@pgmesh/mesh'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { LeaseVoter, Leases } from './lease.js'
import { meshTransport, serveLeases } from './mesh-transport.js'

const logger = pino({ level: 'silent' })

describe('LeaseVoter', () => {
  let clock = 0
  const voter = (): LeaseVoter => new LeaseVoter({ maxDurationMs: 1000, now: () => clock })
  const ask = (v: LeaseVoter, holder: string, term: number, durationMs = 1000): boolean => v.answer({ key: 'db/n1', holder, term, durationMs }).granted

  it('grants nothing until grants it may have forgotten have expired', () => {
    clock = 0
    const v = voter()
    expect(ask(v, 'a', 1)).toBe(false)
    clock = 1000
    expect(ask(v, 'a', 1)).toBe(true)
  })

  it('refuses another holder while a grant runs, a lower term, and a taken term', () => {
    clock = 1000
    const v = voter()
    clock = 2000
    expect(ask(v, 'a', 1)).toBe(true)
    expect(ask(v, 'b', 2)).toBe(false)
    expect(ask(v, 'a', 1)).toBe(true) // renewal
    clock = 3000
    expect(ask(v, 'b', 1)).toBe(false) // term 1 is a's
    expect(ask(v, 'b', 0)).toBe(false)
    expect(ask(v, 'b', 2)).toBe(true)
    expect(ask(v, 'a', 1)).toBe(false)
  })

  it('caps the duration and lets the holder release', () => {
    clock = 1000
    const v = voter()
    clock = 2000
    expect(ask(v, 'a', 1, 60_000)).toBe(true)
    clock = 3001
    expect(ask(v, 'b', 2)).toBe(true)
    v.answer({ key: 'db/n1', holder: 'b', term: 2, durationMs: 0, release: true })
    expect(ask(v, 'c', 3)).toBe(true)
  })

  it('says how long the grant in the way still runs, so a candidate can ask again right then', () => {
    clock = 0
    const v = voter()
    clock = 400
    expect(v.answer({ key: 'db/n1', holder: 'a', term: 1, durationMs: 1000 }).busyForMs).toBe(600) // quiet after its start
    clock = 1000
    expect(ask(v, 'a', 1)).toBe(true)
    clock = 1250
    expect(v.answer({ key: 'db/n1', holder: 'b', term: 2, durationMs: 1000 }).busyForMs).toBe(750)
    // A term refusal has nothing to wait for: a higher term may be granted now.
    expect(v.answer({ key: 'db/n1', holder: 'a', term: 0, durationMs: 1000 }).busyForMs).toBeUndefined()
    clock = 2000
    expect(ask(v, 'b', 2)).toBe(true)
  })
})

describe('Leases: a candidate while the last holder\'s grants run out', () => {
  it('learns when a majority of the voters that answered is free, and gets the lease then', async () => {
    let clock = 0
    const now = (): number => clock
    const local = new LeaseVoter({ maxDurationMs: 4000, now })
    const other = new LeaseVoter({ maxDurationMs: 4000, now })
    clock = 10_000
    // The dead holder's last renewal reached this host's voter at 10 s and the other live one at 10.3 s.
    local.answer({ key: 'db/n1', holder: 'old', term: 1, durationMs: 4000 })
    clock = 10_300
    other.answer({ key: 'db/n1', holder: 'old', term: 1, durationMs: 4000 })
    const transport = {
      voters: () => ['other', 'dead'],
      ask: async (voter: string, request: Parameters<LeaseVoter['answer']>[0]) => {
        if (voter === 'dead') throw new Error('connection refused')
        return other.answer(request)
      }
    }
    const leases = new Leases(local, transport, { durationMs: 4000, driftMs: 200, now })
    clock = 12_000
    const early = await leases.request('db/n1', 'new', 2)
    expect(early.held).toBe(false)
    // Both live voters are needed (the third is dead): the later of their grants decides.
    expect(early.freeInMs).toBe(2300)
    clock = 14_299
    expect((await leases.request('db/n1', 'new', 3)).freeInMs).toBe(1)
    clock = 14_300
    const taken = await leases.request('db/n1', 'new', 4)
    expect(taken.held).toBe(true)
    expect(taken.freeInMs).toBeUndefined()
  })

  it('with fewer answers than a majority (the others dead or still on their way), the longest wait among them', async () => {
    let clock = 0
    const now = (): number => clock
    const local = new LeaseVoter({ maxDurationMs: 1000, now })
    clock = 5000
    local.answer({ key: 'db/n1', holder: 'old', term: 1, durationMs: 1000 })
    clock = 5700
    const transport = { voters: () => ['b', 'c'], ask: async () => { throw new Error('unreachable') } }
    const outcome = await new Leases(local, transport, { durationMs: 1000, driftMs: 50, now }).request('db/n1', 'x', 2)
    expect(outcome.held).toBe(false)
    expect(outcome.freeInMs).toBe(300)
  })
})

describe('Leases: hosts configured with different lease durations', () => {
  it('counts the shortest grant a voter gave, not the duration it asked for', async () => {
    let clock = 10_000
    const now = (): number => clock
    // This host asks for 4 s; its own voter allows 4 s, the two others only 2 s (--lease-ms 2000 there).
    const short = [new LeaseVoter({ maxDurationMs: 2000, now }), new LeaseVoter({ maxDurationMs: 2000, now })]
    clock = 20_000
    const local = new LeaseVoter({ maxDurationMs: 4000, now })
    clock = 30_000
    const transport = { voters: () => ['b', 'c'], ask: async (voter: string, request: Parameters<LeaseVoter['answer']>[0]) => (short[voter === 'b' ? 0 : 1] as LeaseVoter).answer(request) }
    const leases = new Leases(local, transport, { durationMs: 4000, driftMs: 200, now })
    const outcome = await leases.request('db/n1', 'a', 1)
    expect(outcome.held).toBe(true)
    expect(outcome.validUntil).toBe(30_000 + 2000 - 200)
    // Had it counted 4 s, another holder could take the 2 s voters' majority while it still wrote.
    clock = 32_001
    expect(await leases.request('db/n1', 'b', 2).then(o => o.granted)).toBe(2)
  })
})

describe('LeaseVoter.answerFrom: a host acts only for its own instances', () => {
  let clock = 1000
  // Host A's instances end in -a, host B's in -b: what the host's member directory decides from the document.
  const speaksFor = (host: string) => (holder: string): boolean => holder.endsWith(`-${host}`)
  const request = (holder: string, term: number, release = false): { key: string, holder: string, term: number, durationMs: number, release?: boolean } =>
    ({ key: 'db/n1', holder, term, durationMs: 1000, ...(release ? { release } : {}) })

  it('refuses a request or a release for another host\'s instance, and lets the last holder hand over', () => {
    clock = 1000
    const v = new LeaseVoter({ maxDurationMs: 1000, now: () => clock })
    clock = 2000
    // B asks for A's instance: a spoofed holder, never granted.
    expect(v.answerFrom(request('inst-a', 1), speaksFor('b'))).toBeUndefined()
    expect(v.answerFrom(request('inst-a', 1), speaksFor('a'))?.granted).toBe(true)
    // B cannot release A's grant, so B's own request still finds it running.
    expect(v.answerFrom(request('inst-a', 1, true), speaksFor('b'))).toBeUndefined()
    expect(v.answerFrom(request('inst-b', 2), speaksFor('b'))?.granted).toBe(false)
    // A (the holder) releases and hands its node to B's instance: a switchover.
    expect(v.answerFrom(request('inst-a', 1, true), speaksFor('a'))?.granted).toBe(false)
    expect(v.answerFrom(request('inst-b', 2), speaksFor('a'))?.granted).toBe(true)
    // Now B holds it: A can no longer speak for the node, B renews its own.
    expect(v.answerFrom(request('inst-a', 3), speaksFor('a'))?.granted).toBe(false)
    expect(v.answerFrom(request('inst-c', 3), speaksFor('a'))).toBeUndefined()
    expect(v.answerFrom(request('inst-b', 2), speaksFor('b'))?.granted).toBe(true)
  })

  it('refuses a malformed request', () => {
    const v = new LeaseVoter({ maxDurationMs: 1000, now: () => clock })
    expect(v.answerFrom(JSON.parse('{"key":"db/n1","holder":7,"term":1,"durationMs":1}'), () => true)).toBeUndefined()
    expect(v.answerFrom(JSON.parse('null'), () => true)).toBeUndefined()
  })
})

interface Voter { mesh: Mesh, leases: Leases, dir: string }

describe('leases over libp2p', () => {
  const started: Voter[] = []
  afterEach(async () => {
    for (const v of started.splice(0)) {
      await v.mesh.stop()
      await rm(v.dir, { recursive: true, force: true })
    }
  })

  async function cluster (n: number, durationMs: number, guarded = false, refused: string[] = []): Promise<Voter[]> {
    const key = ClusterKey.generate()
    const voters: Voter[] = []
    for (let i = 0; i < n; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'pgmesh-lease-'))
      const mesh = new Mesh({ privateKey: await loadOrCreatePeerKey(join(dir, 'peer.key')), clusterKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], logger })
      const local = new LeaseVoter({ maxDurationMs: durationMs })
      // Guarded: peer i may act only for holders named `inst-<its peer id>`.
      serveLeases(mesh, local, guarded ? { speaksFor: (peer, holder) => holder === `inst-${peer}`, onRefused: (peer) => { refused.push(peer) } } : undefined)
      await mesh.start()
      voters.push({ mesh, dir, leases: undefined as unknown as Leases })
      voters[i]!.leases = new Leases(local, meshTransport(mesh, () => voters.filter(v => v.mesh !== mesh).map(v => v.mesh.peerId)), { durationMs, driftMs: 50 })
    }
    started.push(...voters)
    for (const a of voters) for (const b of voters) if (a !== b) await a.mesh.dial(b.mesh.addresses()[0]!)
    await new Promise(resolve => setTimeout(resolve, durationMs))
    return voters
  }

  it('one holder at a time; a partitioned holder is told to fence before the others can take over', async () => {
    const durationMs = 800
    const [a, b, c] = await cluster(3, durationMs)
    const first = await a!.leases.request('db/n1', 'inst-a', 1)
    expect(first.held).toBe(true)
    // Settled at a majority: the third answer is not waited for.
    expect(first.granted).toBeGreaterThanOrEqual(2)
    expect((await b!.leases.request('db/n1', 'inst-b', 2)).held).toBe(false)

    let lostAt: number | undefined
    const kept = a!.leases.keep('db/n1', 'inst-a', 1, 200, () => { lostAt = performance.now() })
    await new Promise(resolve => setTimeout(resolve, durationMs * 2))
    expect(kept.held()).toBe(true)
    expect(lostAt).toBeUndefined()
    expect((await c!.leases.request('db/n1', 'inst-c', 2)).held).toBe(false)

    // Cut a off from b and c: its renewals reach only its own voter.
    a!.mesh.deny(b!.mesh.peerId)
    a!.mesh.deny(c!.mesh.peerId)
    let acquiredAt: number | undefined
    for (let term = 2; acquiredAt === undefined; term++) {
      const outcome = await b!.leases.request('db/n1', 'inst-b', term)
      if (outcome.held) acquiredAt = performance.now()
      else await new Promise(resolve => setTimeout(resolve, 50))
    }
    expect(lostAt).toBeDefined()
    expect(lostAt!).toBeLessThan(acquiredAt)
    expect(kept.held()).toBe(false)
    await kept.stop()
  })

  it('a keeper that may hold an earlier grant and gets none is told to fence before that grant can end', async () => {
    const durationMs = 1500
    const fenceMs = 500
    const [a, b, c] = await cluster(3, durationMs)
    // The holder's previous process got a grant; this one starts cut off from the majority.
    expect((await a!.leases.request('db/n3', 'inst-a', 1)).held).toBe(true)
    const previousGrantEnds = performance.now() + durationMs
    a!.mesh.deny(b!.mesh.peerId)
    a!.mesh.deny(c!.mesh.peerId)
    let lostAt: number | undefined
    const kept = a!.leases.keep('db/n3', 'inst-a', 2, fenceMs, () => { lostAt = performance.now() }, true)
    // A new holder (nothing it could be writing under yet) just keeps asking.
    let newLost = false
    const fresh = a!.leases.keep('db/n4', 'inst-a', 1, fenceMs, () => { newLost = true })
    await new Promise(resolve => setTimeout(resolve, durationMs))
    expect(kept.held()).toBe(false)
    expect(lostAt).toBeDefined()
    expect(lostAt!).toBeLessThan(previousGrantEnds)
    expect(fresh.held()).toBe(false)
    expect(newLost).toBe(false)
    await kept.stop()
    await fresh.stop()
  })

  it('a released lease can be taken at once', async () => {
    const [a, b] = await cluster(2, 1500)
    expect((await a!.leases.request('db/n2', 'x', 1)).held).toBe(true)
    expect((await b!.leases.request('db/n2', 'y', 2)).held).toBe(false)
    await a!.leases.release('db/n2', 'x', 1)
    const outcome = await b!.leases.request('db/n2', 'y', 2)
    expect(outcome.held).toBe(true)
    expect(outcome.granted).toBe(2)
  })

  it('a holder keeps its lease while a voter is dead, and its eligibility reaches the next candidate', async () => {
    const durationMs = 800
    const [a, b, c] = await cluster(3, durationMs)
    let lost = false
    const kept = a!.leases.keep('db/n3', 'inst-a', 1, 200, () => { lost = true })
    await new Promise(resolve => setTimeout(resolve, durationMs / 2))
    expect(await kept.setEligible(['inst-b'])).toBe(true)
    expect(kept.confirmedEligible).toEqual(['inst-b'])
    await c!.mesh.stop()
    await new Promise(resolve => setTimeout(resolve, durationMs * 3))
    expect(lost).toBe(false)
    expect(kept.held()).toBe(true)
    await kept.stop()
    let outcome = await b!.leases.request('db/n3', 'inst-b', 2)
    while (!outcome.held) {
      await new Promise(resolve => setTimeout(resolve, 50))
      outcome = await b!.leases.request('db/n3', 'inst-b', 2)
    }
    expect(outcome.eligibility).toMatchObject({ term: 1, eligible: ['inst-b'] })
  })

  it('a guarded voter grants nothing to a peer asking for another peer\'s holder', async () => {
    const refused: string[] = []
    const [a, b, c] = await cluster(3, 800, true, refused)
    const own = `inst-${a!.mesh.peerId}`
    expect((await a!.leases.request('db/n5', own, 1)).held).toBe(true)
    // b claims to ask for c's holder: both other voters refuse, b's own vote is not a majority.
    const spoofed = await b!.leases.request('db/n6', `inst-${c!.mesh.peerId}`, 1)
    expect(spoofed.held).toBe(false)
    expect(spoofed.granted).toBe(1)
    expect(refused.filter(p => p === b!.mesh.peerId)).toHaveLength(2)
    // Nor can b release a's lease to take it.
    await b!.leases.release('db/n5', own, 1)
    expect((await b!.leases.request('db/n5', `inst-${b!.mesh.peerId}`, 2)).held).toBe(false)
  })
})
