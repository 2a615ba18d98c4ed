import type { ObservedInstance } from '@pgmesh/model'
import type { Queryable, ReplicationDriver, SubscriptionStatus } from '@pgmesh/replication'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { STALL_MS } from './subscription-health.js'
import { SubscriptionPoller, type SubscriptionPollerDeps } from './subscriptions.js'

const INSTANCE = 'app-n3-x'

/** One subscriber's pglogical, as far as the poller sees it: statuses, and a restart that can die half-way. */
class FakeSubscriber {
  readonly status = new Map<string, string>([['sub_n2_n3', 'replicating']])
  /** The next restart's session ends after its disable (the server shutting down in the pause). */
  dieInNextRestart = false
  readonly restarts: string[] = []

  driver (): ReplicationDriver {
    const rows = (): SubscriptionStatus[] => [...this.status].map(([name, status]) => ({ provider_node: name.split('_')[1] ?? '', name, status }))
    const partial: Partial<ReplicationDriver> = {
      subscriptionStatus: async () => rows(),
      subscriberLag: async () => [],
      applyWorkers: async () => new Map(),
      unreplicatedDdl: async () => undefined,
      restartSubscription: async (_conn, name) => {
        this.restarts.push(name)
        this.status.set(name, 'disabled')
        if (this.dieInNextRestart) {
          this.dieInNextRestart = false
          throw new Error('terminating connection due to administrator command')
        }
        this.status.set(name, 'replicating')
      }
    }
    return partial as ReplicationDriver
  }
}

function poller (subscriber: FakeSubscriber, driver = subscriber.driver()): SubscriptionPoller {
  const providerUp: ObservedInstance = { database_id: 'app', node_name: 'n2', role: 'primary', state: 'available' } as unknown as ObservedInstance
  const deps: SubscriptionPollerDeps = {
    host: {
      databases: { generations: () => new Map([['app', { databaseName: 'app' }]]) } as unknown as SubscriptionPollerDeps['host']['databases'],
      health: { clusterInstances: () => [providerUp] } as unknown as SubscriptionPollerDeps['host']['health'],
      metrics: { subscriptionsDown: { set: () => {} }, subscriptionApplyErrors: { inc: () => {} } } as unknown as SubscriptionPollerDeps['host']['metrics']
    },
    admin: {
      withSession: async (_id, _db, work) => await work({} as Queryable),
      replicationOf: async () => ({ kind: 'pglogical', driver })
    },
    applied: () => [{ instanceId: INSTANCE, databaseId: 'app', nodeName: 'n3', generation: 1, specHash: 'h', replicationHash: 'r' }],
    local: () => ({ instanceId: INSTANCE, state: 'running', role: 'primary', port: 1, postgresVersion: '15', admin: { host: '/tmp', port: 1, user: 'pgmesh' } }),
    requeue: () => {},
    logger: pino({ level: 'silent' }),
    newLogTail: () => ({ read: async () => [] })
  }
  return new SubscriptionPoller(deps)
}

/** The subscription goes down and stays down for STALL_MS with its provider up; the poll after that restarts it. */
async function stallAndPoll (polls: SubscriptionPoller, subscriber: FakeSubscriber): Promise<void> {
  subscriber.status.set('sub_n2_n3', 'down')
  await polls.poll()
  vi.advanceTimersByTime(STALL_MS)
  await polls.poll()
}

describe('SubscriptionPoller', () => {
  beforeEach(() => { vi.useFakeTimers({ now: 1_000_000, toFake: ['Date'] }) })
  afterEach(() => { vi.useRealTimers() })

  it('restarts a stalled subscription', async () => {
    const subscriber = new FakeSubscriber()
    const polls = poller(subscriber)
    await stallAndPoll(polls, subscriber)
    expect(subscriber.restarts).toEqual(['sub_n2_n3'])
    expect(subscriber.status.get('sub_n2_n3')).toBe('replicating')
  })

  it('finishes a restart whose session ended between disable and enable, on the next poll', async () => {
    const subscriber = new FakeSubscriber()
    const polls = poller(subscriber)
    subscriber.dieInNextRestart = true
    await stallAndPoll(polls, subscriber)
    expect(subscriber.status.get('sub_n2_n3')).toBe('disabled')

    vi.advanceTimersByTime(1000)
    await polls.poll()
    expect(subscriber.restarts).toEqual(['sub_n2_n3', 'sub_n2_n3'])
    expect(subscriber.status.get('sub_n2_n3')).toBe('replicating')
    expect(polls.report(INSTANCE)?.subscriptions.map(s => s.status)).toEqual(['replicating'])
  })

  it('drops what a poll saw of an instance forgotten while the poll ran', async () => {
    const subscriber = new FakeSubscriber()
    const driver = subscriber.driver()
    let hold: { read: () => void, released: Promise<void> } | undefined
    const polls = poller(subscriber, {
      ...driver,
      subscriptionStatus: async (conn) => {
        const rows = await driver.subscriptionStatus(conn)
        hold?.read()
        await hold?.released
        return rows
      }
    })
    await polls.poll()
    expect(polls.report(INSTANCE)?.subscriptions.map(s => s.status)).toEqual(['replicating'])
    // A poll has read the subscriptions when the instance is restored, and they start over.
    let read = (): void => {}
    let release = (): void => {}
    const wasRead = new Promise<void>(resolve => { read = resolve })
    hold = { read, released: new Promise<void>(resolve => { release = resolve }) }
    const polling = polls.poll()
    await wasRead
    polls.forget(INSTANCE)
    subscriber.status.set('sub_n2_n3', 'initializing')
    release()
    await polling
    expect(polls.report(INSTANCE)).toBeUndefined()
    hold = undefined
    await polls.poll()
    expect(polls.report(INSTANCE)?.subscriptions.map(s => s.status)).toEqual(['initializing'])
  })

  it('leaves alone a subscription disabled by something else (a node joining pauses its own)', async () => {
    const subscriber = new FakeSubscriber()
    const polls = poller(subscriber)
    subscriber.status.set('sub_n2_n3', 'disabled')
    for (let i = 0; i < 5; i++) {
      await polls.poll()
      vi.advanceTimersByTime(1000)
    }
    expect(subscriber.restarts).toEqual([])
    expect(subscriber.status.get('sub_n2_n3')).toBe('disabled')
  })
})
