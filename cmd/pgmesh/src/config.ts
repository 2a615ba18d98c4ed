import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { hostname, networkInterfaces } from 'node:os'
import { resolve } from 'node:path'
import { DEFAULT_REQUEST_LIMITS, type RequestLimits } from '@pgmesh/api'
import type { HostConfig, TlsSettings } from '@pgmesh/host'
import { IDENTIFIER_MESSAGE, formatIssues, isIdentifier, isLoopbackAddress, issuesFromZod } from '@pgmesh/model'
import { z } from 'zod'

/** The API's TLS, named after the anchor's `http.*` settings; `tls: "auto"` lets pgmesh manage the certificates. */
const HttpTlsSchema = z.strictObject({
  tls: z.enum(['auto']).optional(),
  ca_cert: z.string().min(1).optional(),
  server_cert: z.string().min(1).optional(),
  server_key: z.string().min(1).optional(),
  client_cert: z.string().min(1).optional(),
  client_key: z.string().min(1).optional()
})

/** The daemon's settings as they appear in a config file (snake_case), and after merging flags and env. */
export const FileConfigSchema = z.strictObject({
  host_id: z.string().refine(isIdentifier, { message: IDENTIFIER_MESSAGE }).optional(),
  data_dir: z.string().min(1).optional(),
  http_address: z.string().min(1).optional(),
  http_port: z.number().int().min(0).max(65535).optional(),
  http: HttpTlsSchema.optional(),
  /** Plain HTTP on a non-loopback address: anyone who reaches the port administers the cluster. */
  insecure_http: z.boolean().optional(),
  api_url: z.url().optional(),
  listen: z.array(z.string()).optional(),
  announce: z.array(z.string()).optional(),
  bootstrap: z.array(z.string()).optional(),
  cluster_key_file: z.string().optional(),
  orchestrator: z.enum(['process', 'swarm']).optional(),
  /** process: the PostgreSQL installation root, `<root>/<major>/bin` or `<root>/bin` (default /usr/lib/postgresql). */
  postgres_root: z.string().min(1).optional(),
  /** swarm: the Docker Engine socket (default /var/run/docker.sock). */
  docker_host: z.string().min(1).optional(),
  /** swarm: the Postgres image for databases whose spec names none (default pgmesh/postgres:<major>). */
  postgres_image: z.string().min(1).optional(),
  /** A version manifest (JSON, the anchor's format) merged over the embedded one; read again when it changes. */
  manifest_path: z.string().min(1).optional(),
  /** Each one IP address: peers' pg_hba rules admit the control plane's superuser from exactly these hosts. */
  client_addresses: z.array(z.string().refine(address => isIP(address) !== 0, {
    error: 'must be one IP address (not a network or a name): instances admit the control plane\'s superuser from it'
  })).optional(),
  /** How long a node primary's lease lasts: a failover waits it out, a primary that cannot renew stops writes before it ends. */
  lease_ms: z.number().int().min(1000).max(60_000).optional(),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional(),
  /** false: a control-only host (API and mesh, no instances managed here). */
  reconcile: z.boolean().optional(),
  /**
   * Document history compaction (generations): start one once the document holds `after_changes` changes (default
   * DEFAULT_COMPACTION_AFTER_CHANGES) and every member acknowledged the frontier; `max_silence_ms` (default 45 days):
   * a member silent longer is not waited for; finished tasks older than `task_retention_ms` (default 30 days) move to
   * the task archive. `false`: never start one (a later generation started elsewhere is still followed).
   */
  history_compaction: z.union([z.literal(false), z.strictObject({
    after_changes: z.number().int().min(1).optional(),
    max_silence_ms: z.number().int().min(1000).optional(),
    check_ms: z.number().int().min(100).optional(),
    task_retention_ms: z.number().int().min(0).optional()
  })]).optional(),
  /** API request limits, each defaulting to @pgmesh/api's DEFAULT_REQUEST_LIMITS (per client, per second). */
  api_limits: z.strictObject({
    write_rate: z.number().positive(), write_burst: z.number().int().min(1),
    read_rate: z.number().positive(), read_burst: z.number().int().min(1),
    max_concurrent_writes: z.number().int().min(1)
  }).partial().optional()
})
export type FileConfig = z.infer<typeof FileConfigSchema>

export interface DaemonConfig {
  host: HostConfig
  reconcile: boolean
  httpAddress: string
  httpPort: number
  /** How requests are authenticated: follows from the TLS settings and the listen address. */
  authMode: 'loopback' | 'insecure' | 'tls'
  logLevel: NonNullable<FileConfig['log_level']>
  process: { postgresRoot?: string }
  swarm: { dockerHost: string, postgresImage?: string }
  apiLimits: RequestLimits
}

/** Reads and validates a JSON config file; errors name the file and the offending field. */
export async function loadConfigFile (file: string): Promise<FileConfig> {
  let raw: unknown
  try {
    raw = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    throw new Error(`config file ${file}: ${(err as Error).message}`)
  }
  const parsed = FileConfigSchema.safeParse(raw)
  if (!parsed.success) throw new Error(`config file ${file}:\n${formatIssues(issuesFromZod(parsed.error))}`)
  return parsed.data
}

/**
 * Fills in defaults for whatever neither flags, env nor the file set. `layers` go from lowest to highest priority.
 */
export function resolveConfig (...layers: FileConfig[]): DaemonConfig {
  const merged: FileConfig = {}
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue
      // `http` is merged key by key, so a flag for one certificate keeps the file's others.
      if (k === 'http') merged.http = { ...merged.http, ...Object.fromEntries(Object.entries(v as object).filter(([, x]) => x !== undefined)) }
      else (merged as Record<string, unknown>)[k] = v
    }
  }
  const check = FileConfigSchema.safeParse(merged)
  if (!check.success) throw new Error(formatIssues(issuesFromZod(check.error)))
  const hostId = merged.host_id ?? defaultHostId()
  // Loopback unless told otherwise: the quickstart's `curl http://localhost:3000` works, nobody else reaches it.
  const httpAddress = merged.http_address ?? '127.0.0.1'
  const httpPort = merged.http_port ?? 3000
  const clientAddresses = merged.client_addresses ?? defaultClientAddresses(merged.http_address ?? '0.0.0.0')
  const tls = tlsSettings(merged.http ?? {})
  const loopback = isLoopbackAddress(httpAddress)
  if (tls.mode === 'none' && !loopback && merged.insecure_http !== true) {
    throw new Error(`refusing to serve plain HTTP on ${httpAddress}: anyone who reaches it could administer the cluster. ` +
      'Turn on TLS (--tls auto, or --http-ca-cert/--http-server-cert/--http-server-key), listen on loopback, or pass --insecure-http.')
  }
  const scheme = tls.mode === 'none' ? 'http' : 'https'
  const apiHost = loopback ? (httpAddress === '::1' ? '[::1]' : httpAddress === 'localhost' ? '127.0.0.1' : httpAddress) : clientAddresses[0] ?? '127.0.0.1'
  return {
    httpAddress,
    httpPort,
    authMode: tls.mode !== 'none' ? 'tls' : loopback ? 'loopback' : 'insecure',
    logLevel: merged.log_level ?? 'info',
    reconcile: merged.reconcile ?? true,
    apiLimits: apiLimits(merged.api_limits ?? {}),
    process: merged.postgres_root === undefined ? {} : { postgresRoot: resolve(merged.postgres_root) },
    swarm: {
      dockerHost: merged.docker_host ?? '/var/run/docker.sock',
      ...(merged.postgres_image === undefined ? {} : { postgresImage: merged.postgres_image })
    },
    host: {
      hostId,
      dataDir: resolve(merged.data_dir ?? 'pgmesh-data'),
      apiUrl: merged.api_url ?? `${scheme}://${apiHost}:${httpPort}`,
      tls,
      listen: merged.listen ?? ['/ip4/0.0.0.0/tcp/3100'],
      announce: merged.announce ?? [],
      bootstrap: merged.bootstrap ?? [],
      ...(merged.cluster_key_file === undefined ? {} : { clusterKeyFile: resolve(merged.cluster_key_file) }),
      orchestrator: merged.orchestrator ?? 'process',
      clientAddresses,
      ...(merged.manifest_path === undefined ? {} : { manifestPath: resolve(merged.manifest_path) }),
      ...(merged.lease_ms === undefined ? {} : { leaseMs: merged.lease_ms }),
      ...(merged.history_compaction === false ? {} : { historyCompaction: historyCompaction(merged.history_compaction ?? {}) })
    }
  }
}

/**
 * About two months of a busy cluster (a task lifecycle is ~3 changes; bench:history's year is 200,000 of them): the
 * document stays under ~10 MB, and a host may be silent for up to max_silence_ms (45 days) and still merge.
 */
export const DEFAULT_COMPACTION_AFTER_CHANGES = 100_000

function historyCompaction (h: Exclude<NonNullable<FileConfig['history_compaction']>, false>): NonNullable<HostConfig['historyCompaction']> {
  return {
    afterChanges: h.after_changes ?? DEFAULT_COMPACTION_AFTER_CHANGES,
    ...(h.max_silence_ms === undefined ? {} : { maxSilenceMs: h.max_silence_ms }),
    ...(h.check_ms === undefined ? {} : { checkMs: h.check_ms }),
    ...(h.task_retention_ms === undefined ? {} : { taskRetentionMs: h.task_retention_ms })
  }
}

function apiLimits (l: NonNullable<FileConfig['api_limits']>): RequestLimits {
  const d = DEFAULT_REQUEST_LIMITS
  return {
    writes: { perSecond: l.write_rate ?? d.writes.perSecond, burst: l.write_burst ?? d.writes.burst },
    reads: { perSecond: l.read_rate ?? d.reads.perSecond, burst: l.read_burst ?? d.reads.burst },
    maxConcurrentWrites: l.max_concurrent_writes ?? d.maxConcurrentWrites
  }
}

function tlsSettings (http: NonNullable<FileConfig['http']>): TlsSettings {
  const files = [http.ca_cert, http.server_cert, http.server_key]
  if (http.tls === 'auto') {
    if (files.some(f => f !== undefined)) throw new Error('http.tls "auto" manages its own certificates: give either it or http.ca_cert/server_cert/server_key')
    return { mode: 'auto' }
  }
  if (files.every(f => f === undefined)) {
    if (http.client_cert !== undefined || http.client_key !== undefined) throw new Error('http.client_cert/client_key need http.ca_cert, server_cert and server_key')
    return { mode: 'none' }
  }
  const [caCert, serverCert, serverKey] = files
  if (caCert === undefined || serverCert === undefined || serverKey === undefined) throw new Error('TLS needs all of http.ca_cert, http.server_cert and http.server_key')
  if ((http.client_cert === undefined) !== (http.client_key === undefined)) throw new Error('http.client_cert and http.client_key go together')
  return {
    mode: 'configured',
    caCert: resolve(caCert),
    serverCert: resolve(serverCert),
    serverKey: resolve(serverKey),
    ...(http.client_cert === undefined || http.client_key === undefined ? {} : { clientCert: resolve(http.client_cert), clientKey: resolve(http.client_key) })
  }
}

/** The short hostname, made into a valid identifier (the anchor's default host id). */
function defaultHostId (): string {
  const short = hostname().split('.')[0] ?? 'host'
  const id = short.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '').slice(0, 36)
  return id === '' ? 'host' : id
}

function defaultClientAddresses (httpAddress: string): string[] {
  if (httpAddress !== '0.0.0.0' && httpAddress !== '::') return [httpAddress]
  const found = Object.values(networkInterfaces()).flat()
    .filter((i): i is NonNullable<typeof i> => i !== undefined && i.family === 'IPv4' && !i.internal)
    .map(i => i.address)
  return found.length > 0 ? found : ['127.0.0.1']
}
