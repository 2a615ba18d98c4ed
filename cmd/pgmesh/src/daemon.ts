import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { createAdaptorServer, type ServerType } from '@hono/node-server'
import { apiComponents, createApp } from '@pgmesh/api'
import { Host, type HostConfig, type HostSources } from '@pgmesh/host'
import type { Orchestrator } from '@pgmesh/orchestrator'
import { DEBIAN_POSTGRES_ROOT, installedPostgresVersions, newestPostgresVersion, ProcessOrchestrator } from '@pgmesh/orchestrator-process'
import { defaultImage, EMBEDDED_MANIFEST, type HostObserved, manifestRepositories, type PgVersion } from '@pgmesh/model'
import { Reconciler, reconcilerHost } from '@pgmesh/reconciler'
import pino, { type Logger } from 'pino'
import { automergeMemoryBytes } from './automerge-memory.js'
import type { DaemonConfig } from './config.js'

/** Paths whose values never reach a log line. */
export const REDACT = ['token', '*.token', 'cluster_key', '*.cluster_key', 'data_key', '*.data_key', 'password', '*.password', '*.*.password', 'req.headers.authorization', 'credentials', '*.credentials', 'ca_key', '*.ca_key']

export interface Daemon {
  host: Host
  logger: Logger
  /** Resolves once everything is flushed and closed. */
  stop: () => Promise<void>
}

/** `pgmesh run`: the host runtime plus its HTTP server, with a graceful stop (503 for new requests, flush, close). */
export async function runDaemon (config: DaemonConfig, logger = pino({ level: config.logLevel, redact: REDACT })): Promise<Daemon> {
  // The orchestrator opens first (the host reports its instances); the superuser password comes from the host's data
  // key, read through this reference once the host exists.
  let opened: Host | undefined
  const superuserPassword = (): string | undefined => opened?.superuserPassword()
  // The swarm orchestrator lets databases run the images of this host's version manifest, as it is when it asks.
  const manifestImageRepositories = (): readonly string[] => manifestRepositories(opened?.manifest.current() ?? EMBEDDED_MANIFEST)
  const { orchestrator, components } = config.reconcile
    ? await openOrchestrator(config, logger.child({ component: 'orchestrator' }), superuserPassword, manifestImageRepositories)
    : { orchestrator: undefined, components: {} }
  // The host reports the reconciler's instances in its heartbeats, and the reconciler runs on the host's parts: the
  // host reads them through this reference, set once the reconciler exists.
  let reconciler: Reconciler | undefined
  const versions = config.reconcile ? postgresVersionsOf(config, () => opened, logger) : undefined
  const host = await Host.open(await withDefaultPostgresVersion(config), logger, {
    ownInstances: () => reconciler?.observedInstances() ?? [],
    components,
    // Automerge has loaded with the daemon's modules: its memory is known here unless `pgmesh run` did not watch for it.
    ...(automergeMemoryBytes() === undefined ? {} : { automergeMemoryBytes: () => automergeMemoryBytes() ?? Number.NaN }),
    ...(versions === undefined ? {} : { postgresVersions: versions.current })
  })
  opened = host
  let draining = false
  const app = createApp(apiComponents(host), {
    logger: logger.child({ component: 'api' }),
    isDraining: () => draining,
    limits: config.apiLimits,
    auth: { mode: config.authMode, allowedHosts: [new URL(config.host.apiUrl).hostname], bootstrapping: () => host.tls.bootstrapping }
  })
  if (config.authMode === 'insecure') {
    logger.warn({ http: `${config.httpAddress}:${config.httpPort}` }, 'INSECURE: plain HTTP on a non-loopback address (--insecure-http): anyone who reaches this port can administer every database of the cluster')
  }
  reconciler = orchestrator === undefined ? undefined : new Reconciler(reconcilerHost(host), orchestrator, { logger: logger.child({ component: 'reconciler' }) })
  await host.start()
  await reconciler?.start()
  const server: ServerType = host.tls.enabled
    ? createAdaptorServer({
      fetch: app.fetch,
      createServer: createHttpsServer,
      // Client certificates are asked for and verified, but the decision is the API's: a request without one
      // gets a 401 in the anchor's shape (and the public routes stay reachable) instead of a TLS alert.
      serverOptions: { ...host.tls.serverOptions(), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' }
    })
    : createAdaptorServer({ fetch: app.fetch })
  // A deep accept queue (the kernel caps it at somaxconn): under a crowd of new connections Node's default of 511
  // overflows, and a connection whose handshake the kernel then drops is reset when its client sends the request,
  // instead of getting the API's 429/503.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ port: config.httpPort, host: config.httpAddress, backlog: 4096 }, () => { server.off('error', reject); resolve() })
  })
  // auto TLS: the cluster's certificates replace the bootstrap one at init and join, without a restart.
  host.tls.on('changed', () => { (server as HttpsServer).setSecureContext({ ...host.tls.serverOptions(), minVersion: 'TLSv1.3' }) })
  logger.info({ hostId: config.host.hostId, apiUrl: config.host.apiUrl, http: `${config.httpAddress}:${config.httpPort}`, initialized: host.initialized }, 'pgmesh host ready')
  let stopping: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    stopping ??= (async () => {
      draining = true
      logger.info('shutting down')
      // Instances keep running without the daemon, as containers outlive their control plane.
      await reconciler?.stop()
      versions?.stop()
      await orchestrator?.close()
      await host.stop()
      await new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        if ('closeIdleConnections' in server) server.closeIdleConnections()
      })
      logger.info('stopped')
    })()
    await stopping
  }
  return { host, logger, stop }
}

/** How often a process host reads its binaries' versions again (a package upgrade shows within this). */
const INSTALLED_VERSIONS_MS = 30_000

/**
 * The versions this host reports (the anchor's default_pgedge_version and supported_pgedge_versions): a process host
 * what its installed binaries provide now, read every 30 s; a Swarm host its version manifest's stable images.
 */
function postgresVersionsOf (config: DaemonConfig, host: () => Host | undefined, logger: Logger): { current: () => HostObserved['postgres_versions'], stop: () => void } {
  if (config.host.orchestrator === 'swarm') {
    return {
      current: () => {
        const manifest = host()?.manifest.current() ?? EMBEDDED_MANIFEST
        const pick = (i: PgVersion): PgVersion => ({ postgres_version: i.postgres_version, ...(i.spock_version === undefined ? {} : { spock_version: i.spock_version }) })
        const supported = new Map(manifest.images.postgres.filter(i => i.stability === 'stable').map(i => [`${i.postgres_version} ${i.spock_version ?? ''}`, pick(i)]))
        const chosen = defaultImage(manifest)
        return { ...(chosen === undefined ? {} : { default: pick(chosen) }), supported: [...supported.values()] }
      },
      stop: () => {}
    }
  }
  const root = config.process.postgresRoot ?? DEBIAN_POSTGRES_ROOT
  let installed: string[] | undefined
  const read = (): void => {
    installedPostgresVersions(root).then(v => { installed = v }, (err: unknown) => { logger.warn({ err: (err as Error).message, root }, 'installed PostgreSQL versions not readable') })
  }
  read()
  const timer = setInterval(read, INSTALLED_VERSIONS_MS)
  timer.unref()
  return {
    current: () => {
      if (installed === undefined) return undefined
      const chosen = host()?.config.defaultPostgresVersion
      return { ...(chosen === undefined ? {} : { default: { postgres_version: chosen } }), supported: installed.map(v => ({ postgres_version: v })) }
    },
    stop: () => { clearInterval(timer) }
  }
}

/**
 * A process host with its own PostgreSQL root gives new databases that root's newest version (the host's own
 * detection only knows Debian's layout under /usr/lib/postgresql).
 */
async function withDefaultPostgresVersion (config: DaemonConfig): Promise<HostConfig> {
  const root = config.process.postgresRoot
  if (root === undefined || config.host.orchestrator !== 'process' || config.host.defaultPostgresVersion !== undefined) return config.host
  const version = await newestPostgresVersion(root)
  return version === undefined ? config.host : { ...config.host, defaultPostgresVersion: version }
}

async function openOrchestrator (
  config: DaemonConfig, logger: Logger, superuserPassword: () => string | undefined, manifestImageRepositories: () => readonly string[]
): Promise<{ orchestrator: Orchestrator, components: NonNullable<HostSources['components']> }> {
  const { dataDir, hostId } = config.host
  if (config.host.orchestrator === 'process') {
    return { orchestrator: await ProcessOrchestrator.open({ dataDir, logger, superuserPassword, ...config.process }), components: {} }
  }
  // Loaded only on a Swarm host: dockerode brings gRPC and protobuf.js along, 0.7 MB of code a process host held for nothing.
  const { SwarmOrchestrator } = await import('@pgmesh/orchestrator-swarm')
  const swarm = await SwarmOrchestrator.open({
    dataDir, hostId, logger, dockerHost: config.swarm.dockerHost, superuserPassword, manifestRepositories: manifestImageRepositories,
    ...(config.swarm.postgresImage === undefined ? {} : { defaultImage: config.swarm.postgresImage })
  })
  return { orchestrator: swarm, components: { docker: () => swarm.dockerComponent() } }
}
