import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { PgmeshClient, type TlsOptions } from '@pgmesh/client'
import { type Command, Option } from 'commander'
import { EXIT, UsageError, reportError } from './errors.js'
import { OUTPUT_FORMATS, type OutputFormat, type Painter, colorEnabled, painter } from './output.js'

export const DEFAULT_SERVER = 'http://127.0.0.1:3000'

/** What every client command works with. */
export interface Context {
  /** Connects lazily: commands that fail on their arguments never touch the network. */
  readonly client: PgmeshClient
  readonly format: OutputFormat
  out: (s: string) => void
  err: (s: string) => void
  /** Colours for stdout and for stderr, each on only when that stream is a terminal. */
  paint: Painter
  errPaint: Painter
  stdoutTTY: boolean
  stderrTTY: boolean
  stdinTTY: boolean
}

/** The optional file `$XDG_CONFIG_HOME/pgmesh/config.json` (default `~/.config/pgmesh/config.json`). */
export interface ClientConfigFile {
  /** Base URLs of hosts, tried in order: a comma-separated string or an array. */
  server?: string | string[]
  output?: OutputFormat
  /** PEM files: the CA that signs the hosts' certificates, and this client's certificate and key (`--tls auto`: `<data-dir>/tls/ca.crt`, `admin.crt`, `admin.key`). */
  ca_cert?: string
  client_cert?: string
  client_key?: string
  /** A bearer token of the API (viewer or operator). */
  token?: string
}

const FILE_KEYS = ['server', 'output', 'ca_cert', 'client_cert', 'client_key', 'token']

export function configFilePath (env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(env.HOME ?? homedir(), '.config')
  return join(base, 'pgmesh', 'config.json')
}

export function loadConfigFile (path: string): ClientConfigFile {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new UsageError(`${path}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try { parsed = JSON.parse(text) } catch (err) { throw new UsageError(`${path}: not JSON: ${(err as Error).message}`) }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError(`${path}: must hold a JSON object`)
  const config = parsed as Record<string, unknown>
  const problems: string[] = []
  for (const key of Object.keys(config)) if (!FILE_KEYS.includes(key)) problems.push(`${key}: unknown setting (known: ${FILE_KEYS.join(', ')})`)
  for (const key of FILE_KEYS.slice(2)) if (config[key] !== undefined && typeof config[key] !== 'string') problems.push(`${key}: must be a string`)
  const server = config.server
  if (server !== undefined && typeof server !== 'string' && !(Array.isArray(server) && server.every(s => typeof s === 'string'))) problems.push('server: must be a string or an array of strings')
  if (config.output !== undefined && !OUTPUT_FORMATS.includes(config.output as OutputFormat)) problems.push(`output: must be one of ${OUTPUT_FORMATS.join(', ')}`)
  if (problems.length > 0) throw new UsageError(`${path}:\n${problems.map(p => `  ${p}`).join('\n')}`)
  return config as ClientConfigFile
}

/** `a,b` and `['a', 'b,c']` alike become a list of URLs. */
export function serverList (value: string | readonly string[]): string[] {
  return (typeof value === 'string' ? [value] : value).flatMap(v => v.split(',')).map(s => s.trim()).filter(s => s !== '')
}

/** The settings a client command resolves: flags > environment > config file > defaults. */
export function resolveTarget (opts: { server?: string, output?: string }, sources: { server?: string, output?: string }, env: NodeJS.ProcessEnv = process.env): { servers: string[], format: OutputFormat } {
  const needFile = sources.server !== 'cli' && sources.server !== 'env'
  const file = needFile || sources.output !== 'cli' ? loadConfigFile(configFilePath(env)) : {}
  const servers = opts.server !== undefined && (sources.server === 'cli' || sources.server === 'env')
    ? serverList(opts.server)
    : file.server !== undefined ? serverList(file.server) : [DEFAULT_SERVER]
  if (servers.length === 0) throw new UsageError('no server given (--server URL[,URL...])')
  for (const s of servers) {
    let url: URL
    try { url = new URL(s) } catch { throw new UsageError(`${s}: not a URL (e.g. http://127.0.0.1:3000)`) }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${s}: only http:// and https:// servers`)
  }
  const format = (sources.output === 'cli' ? opts.output : file.output ?? opts.output ?? 'table') as OutputFormat
  return { servers, format }
}

/**
 * TLS and the bearer token, from flags, env (PGMESH_CA_CERT, PGMESH_CLIENT_CERT, PGMESH_CLIENT_KEY, PGMESH_TOKEN) or
 * the config file, in that order. Files are read here, so a missing one is a usage error before any request.
 */
export function credentialSettings (opts: { caCert?: string, clientCert?: string, clientKey?: string, apiToken?: string }, env: NodeJS.ProcessEnv = process.env): { tls?: TlsOptions, token?: string } {
  const file = opts.caCert === undefined || opts.clientCert === undefined || opts.clientKey === undefined || opts.apiToken === undefined ? loadConfigFile(configFilePath(env)) : {}
  const caCert = opts.caCert ?? file.ca_cert
  const clientCert = opts.clientCert ?? file.client_cert
  const clientKey = opts.clientKey ?? file.client_key
  const token = opts.apiToken ?? file.token
  if ((clientCert === undefined) !== (clientKey === undefined)) throw new UsageError('--client-cert and --client-key go together')
  const read = (path: string, what: string): string => {
    try { return readFileSync(path, 'utf8') } catch (err) { throw new UsageError(`${what} ${path}: ${(err as Error).message}`) }
  }
  const tls: TlsOptions = {
    ...(caCert === undefined ? {} : { ca: read(caCert, 'CA certificate') }),
    ...(clientCert === undefined || clientKey === undefined ? {} : { cert: read(clientCert, 'client certificate'), key: read(clientKey, 'client key') })
  }
  return { ...(Object.keys(tls).length === 0 ? {} : { tls }), ...(token === undefined || token === '' ? {} : { token }) }
}

/** The options every client command takes. */
export function withClientOptions (command: Command): Command {
  return command
    .addOption(new Option('-s, --server <urls>', 'API base URL(s) of any hosts, comma separated, tried in order until one answers').env('PGMESH_SERVER'))
    .addOption(new Option('-o, --output <format>', 'output format').choices([...OUTPUT_FORMATS]).default('table'))
    .addOption(new Option('--ca-cert <file>', 'https: the CA that signs the hosts\' certificates').env('PGMESH_CA_CERT'))
    .addOption(new Option('--client-cert <file>', 'https: this client\'s certificate').env('PGMESH_CLIENT_CERT'))
    .addOption(new Option('--client-key <file>', 'https: the key of --client-cert').env('PGMESH_CLIENT_KEY'))
    .addOption(new Option('--api-token <token>', 'a bearer token of the API (prefer PGMESH_TOKEN: arguments are visible to other users)').env('PGMESH_TOKEN'))
}

type ActionArgs = unknown[]

/**
 * Wraps a client command's action: builds the context from the options, runs it, and turns any error into a
 * readable message and an exit code (set on process.exitCode, so pending output is still written).
 */
export function clientAction (fn: (ctx: Context, opts: Record<string, any>, ...args: any[]) => Promise<void>): (...args: ActionArgs) => Promise<void> {
  return async (...all: ActionArgs) => {
    const command = all.at(-1) as Command
    const opts = command.opts()
    const args = all.slice(0, -2)
    const errPaint = painter(colorEnabled(process.stderr))
    try {
      const target = resolveTarget(opts, { server: command.getOptionValueSource('server'), output: command.getOptionValueSource('output') })
      let client: PgmeshClient | undefined
      const credentials = credentialSettings(opts)
      const ctx: Context = {
        get client () {
          client ??= new PgmeshClient({ servers: target.servers, ...credentials })
          return client
        },
        format: target.format,
        out: s => { process.stdout.write(s) },
        err: s => { process.stderr.write(s) },
        paint: painter(colorEnabled(process.stdout)),
        errPaint,
        stdoutTTY: process.stdout.isTTY,
        stderrTTY: process.stderr.isTTY,
        stdinTTY: process.stdin.isTTY
      }
      await fn(ctx, opts, ...args)
      process.exitCode = EXIT.ok
    } catch (err) {
      process.exitCode = reportError(err, errPaint)
    }
  }
}
