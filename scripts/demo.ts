// The main job on one machine: a local three-host pgmesh cluster on loopback (embedded process orchestrator).
// host-2 joins with the join token, host-3 by bootstrap multiaddr; prints each host's API. Ctrl-C stops it.
import { mkdir, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { DaemonProcess, until } from '../test/helpers/cluster.js'

const root = resolve(process.env.PGMESH_DEMO_DIR ?? '.pgmesh-demo')
const basePort = Number(process.env.PGMESH_DEMO_PORT ?? 3001)

await rm(root, { recursive: true, force: true })
await mkdir(root, { recursive: true })

function daemon (i: number, extra: Partial<ConstructorParameters<typeof DaemonProcess>[0]> = {}): DaemonProcess {
  return new DaemonProcess({
    hostId: `host-${i}`, dataDir: join(root, `host-${i}`), httpPort: basePort + i - 1, p2pPort: basePort + 100 + i - 1,
    logFile: join(root, `host-${i}.log`), logLevel: 'info', ...extra
  })
}

const hosts: DaemonProcess[] = []
const stopAll = async (): Promise<void> => { await Promise.all(hosts.map(async h => { await h.stop('SIGTERM') })) }
process.on('SIGINT', () => { void stopAll().then(() => process.exit(0)) })
process.on('SIGTERM', () => { void stopAll().then(() => process.exit(0)) })

try {
  const h1 = daemon(1)
  hosts.push(h1)
  await h1.start()
  const init = await h1.get('/v1/cluster/init?cluster_id=demo')
  if (init.status !== 200) throw new Error(`init: ${JSON.stringify(init.body)}`)
  console.log(`host-1 initialized cluster "demo"; join token ${String(init.body.token).slice(0, 20)}…`)

  const h2 = daemon(2)
  hosts.push(h2)
  await h2.start()
  const joined = await h2.post('/v1/cluster/join', init.body)
  if (joined.status !== 204) throw new Error(`join: ${JSON.stringify(joined.body)}`)
  console.log('host-2 joined with the token')

  const h3 = daemon(3, { bootstrap: [await h1.multiaddr()], clusterKeyFile: join(root, 'host-1', 'cluster.key') })
  hosts.push(h3)
  await h3.start()
  await until('host-3 to join', async () => (await h3.get('/v1/cluster')).status === 200, 20_000)
  console.log('host-3 joined by bootstrap multiaddr and cluster key')

  await until('three healthy hosts', async () => {
    const res = await h3.get('/v1/hosts')
    return (res.body.hosts as Array<{ status: { state: string } }>).filter(h => h.status.state === 'healthy').length === 3
  }, 20_000, 100)
  console.log('\nCluster "demo" is up; every host serves the same API:')
  for (const h of hosts) console.log(`  ${h.hostId}  ${h.url}   (log: ${join(root, `${h.hostId}.log`)})`)
  console.log(`\nTry:\n  curl -s ${h1.url}/v1/hosts\n  curl -s ${hosts[2]?.url ?? ''}/v1/cluster\n  curl -s ${h1.url}/metrics | grep pgmesh_\n\nCtrl-C stops the cluster.`)
  await new Promise(() => {})
} catch (err) {
  console.error((err as Error).message)
  for (const h of hosts) console.error(`--- ${h.hostId} log: ${join(root, `${h.hostId}.log`)}`)
  await stopAll()
  process.exit(1)
}
