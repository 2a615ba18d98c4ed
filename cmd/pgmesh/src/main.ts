#!/usr/bin/env -S node --max-semi-space-size=4 --v8-pool-size=2
// A young generation of 4 MB, not V8's 16 (a daemon holding 1,000 databases idled at 151-166 MB instead of 165-202),
// and 2 V8 worker threads, not Node's 4 (what each worker allocates stays in the process: 7 MB less), at no measured
// cost in throughput (npm run bench:api). Launchers that run `node <bin>` take these flags from here.
import { Command, CommanderError, Option } from 'commander'
import type { FileConfig } from './config.js'
import { watchAutomergeMemory } from './automerge-memory.js'
import { EXIT, registerClientCommands } from './cli/index.js'

// The daemon's modules (libp2p, Automerge, the orchestrators) load only for the commands that need them: the
// client commands start in a fraction of the time.
async function daemonModules (): Promise<{ daemon: typeof import('./daemon.js'), config: typeof import('./config.js'), pino: typeof import('pino').default }> {
  await import('@pgmesh/mesh') // its polyfill comes before libp2p
  const [daemon, config, pino] = await Promise.all([import('./daemon.js'), import('./config.js'), import('pino')])
  return { daemon, config, pino: pino.default }
}

const program = new Command('pgmesh')
  .description('Leaderless control plane for distributed PostgreSQL: the host daemon (pgmesh run) and the operator\'s client of any host')
  .showHelpAfterError()
  .exitOverride()

const list = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), ...value.split(',').map(s => s.trim()).filter(s => s !== '')]

program.command('run')
  .description('run the host daemon')
  .addOption(new Option('-c, --config <file>', 'JSON config file (flags > env > file)').env('PGMESH_CONFIG'))
  .addOption(new Option('--host-id <id>', 'this host\'s id (default: short hostname)').env('PGMESH_HOST_ID'))
  .addOption(new Option('--data-dir <dir>', 'where this host keeps its state (default: ./pgmesh-data)').env('PGMESH_DATA_DIR'))
  .addOption(new Option('--http-address <addr>', 'HTTP listen address (default: 127.0.0.1; any other needs TLS or --insecure-http)').env('PGMESH_HTTP_ADDRESS'))
  .addOption(new Option('--http-port <port>', 'HTTP listen port (default: 3000)').env('PGMESH_HTTP_PORT').argParser(v => Number.parseInt(v, 10)))
  .addOption(new Option('--tls <mode>', 'auto: pgmesh creates and manages the cluster CA and certificates in <data-dir>/tls').choices(['auto']).env('PGMESH_TLS'))
  .addOption(new Option('--http-ca-cert <file>', 'TLS: the CA that signs server and client certificates').env('PGMESH_HTTP_CA_CERT'))
  .addOption(new Option('--http-server-cert <file>', 'TLS: this host\'s server certificate').env('PGMESH_HTTP_SERVER_CERT'))
  .addOption(new Option('--http-server-key <file>', 'TLS: this host\'s server key').env('PGMESH_HTTP_SERVER_KEY'))
  .addOption(new Option('--http-client-cert <file>', 'TLS: the client certificate this host presents to other members').env('PGMESH_HTTP_CLIENT_CERT'))
  .addOption(new Option('--http-client-key <file>', 'TLS: the key of --http-client-cert').env('PGMESH_HTTP_CLIENT_KEY'))
  .addOption(new Option('--insecure-http', 'serve plain HTTP on a non-loopback address: anyone who reaches it administers the cluster').env('PGMESH_INSECURE_HTTP'))
  .addOption(new Option('--api-url <url>', 'URL other hosts and clients reach this API at').env('PGMESH_API_URL'))
  .addOption(new Option('--listen <multiaddr>', 'libp2p listen multiaddr(s), comma separated (default: /ip4/0.0.0.0/tcp/3100)').env('PGMESH_LISTEN').argParser(list))
  .addOption(new Option('--announce <multiaddr>', 'libp2p addresses to announce instead of the listen ones').env('PGMESH_ANNOUNCE').argParser(list))
  .addOption(new Option('--bootstrap <multiaddr>', 'join through this host (multiaddr ending in /p2p/<peer id>); with --cluster-key').env('PGMESH_BOOTSTRAP').argParser(list))
  .addOption(new Option('--cluster-key <file>', 'the cluster\'s private-network key file').env('PGMESH_CLUSTER_KEY'))
  .addOption(new Option('--orchestrator <kind>', 'how instances run on this host').choices(['process', 'swarm']).env('PGMESH_ORCHESTRATOR'))
  .addOption(new Option('--postgres-root <dir>', 'process: the PostgreSQL installation, <dir>/<major>/bin or <dir>/bin (default: /usr/lib/postgresql)').env('PGMESH_POSTGRES_ROOT'))
  .addOption(new Option('--docker-host <socket>', 'swarm: the Docker Engine socket (default: /var/run/docker.sock)').env('PGMESH_DOCKER_HOST'))
  .addOption(new Option('--postgres-image <image>', 'swarm: the Postgres image of databases that name none (default: pgmesh/postgres:<major>)').env('PGMESH_POSTGRES_IMAGE'))
  .addOption(new Option('--manifest-path <file>', 'a version manifest (JSON) merged over the embedded one: images and versions upgrades may use').env('PGMESH_MANIFEST_PATH'))
  .addOption(new Option('--lease-ms <ms>', 'how long a node primary\'s lease lasts; a failover takes a little longer (default: 2500, at least 1000; the same on every host)').env('PGMESH_LEASE_MS').argParser(v => Number(v)))
  .addOption(new Option('--client-addresses <addrs>', 'addresses clients reach this host at').env('PGMESH_CLIENT_ADDRESSES').argParser(list))
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).env('PGMESH_LOG_LEVEL'))
  .addOption(new Option('--reconcile <bool>', 'manage instances on this host (false: a control-only host)').choices(['true', 'false']).env('PGMESH_RECONCILE').argParser(v => v === 'true'))
  .action(async (opts: Record<string, unknown>, command: Command) => {
    watchAutomergeMemory() // before Automerge loads with the daemon's modules
    const { daemon: { REDACT, runDaemon }, config: { loadConfigFile, resolveConfig }, pino } = await daemonModules()
    const fromFile = typeof opts.config === 'string' ? await loadConfigFile(opts.config) : {}
    const fromArgs: FileConfig = {}
    const names: Record<string, keyof FileConfig> = {
      hostId: 'host_id', dataDir: 'data_dir', httpAddress: 'http_address', httpPort: 'http_port', apiUrl: 'api_url', listen: 'listen',
      announce: 'announce', bootstrap: 'bootstrap', clusterKey: 'cluster_key_file', orchestrator: 'orchestrator', postgresRoot: 'postgres_root', dockerHost: 'docker_host', postgresImage: 'postgres_image', manifestPath: 'manifest_path', clientAddresses: 'client_addresses', logLevel: 'log_level', reconcile: 'reconcile', insecureHttp: 'insecure_http', leaseMs: 'lease_ms'
    }
    const httpNames: Record<string, keyof NonNullable<FileConfig['http']>> = {
      tls: 'tls', httpCaCert: 'ca_cert', httpServerCert: 'server_cert', httpServerKey: 'server_key', httpClientCert: 'client_cert', httpClientKey: 'client_key'
    }
    const fromEnv: FileConfig = {}
    for (const [option, key] of Object.entries(names)) {
      if (opts[option] === undefined) continue
      const source = command.getOptionValueSource(option)
      ;((source === 'env' ? fromEnv : fromArgs) as Record<string, unknown>)[key] = opts[option]
    }
    for (const [option, key] of Object.entries(httpNames)) {
      if (opts[option] === undefined) continue
      const layer = command.getOptionValueSource(option) === 'env' ? fromEnv : fromArgs
      layer.http = { ...layer.http, [key]: opts[option] }
    }
    const config = resolveConfig(fromFile, fromEnv, fromArgs)
    const logger = pino({ level: config.logLevel, redact: REDACT })
    const daemon = await runDaemon(config, logger)
    let signals = 0
    const onSignal = (signal: string): void => {
      if (++signals > 1) process.exit(1)
      logger.info({ signal }, 'signal received')
      daemon.stop().then(() => process.exit(0), (err: unknown) => { logger.error({ err }, 'unclean shutdown'); process.exit(1) })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })

program.command('openapi')
  .description('print the OpenAPI document of the v1 API')
  .action(async () => { await (await import('./openapi.js')).printOpenApi() })

program.command('cluster-key')
  .description('print a new cluster (private network) key, for joining hosts with --bootstrap')
  .action(async () => {
    const { ClusterKey } = await import('@pgmesh/mesh')
    process.stdout.write(ClusterKey.generate().toString() + '\n')
  })

registerClientCommands(program)

program.parseAsync().catch(async (err: unknown) => {
  if (err instanceof CommanderError) {
    // Help and version exit 0; anything else commander refused (unknown option, missing argument) is a usage error.
    process.exitCode = err.exitCode === 0 ? 0 : EXIT.usage
    return
  }
  const { daemon: { REDACT }, pino } = await daemonModules()
  pino({ redact: REDACT }).fatal({ err }, (err as Error).message)
  process.exitCode = 1
})
