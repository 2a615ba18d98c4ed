/**
 * The anchor's cross-field rules over a spec that passed its schema (unique names and ports, source nodes, users,
 * repositories, hba lines, services, known hosts, and on update the immutables), each problem a path-prefixed issue.
 */
import type { Issue } from '../errors.js'
import { instanceId } from '../ids.js'
import { hbaEntryProblem, hbaRuleProblem, identEntryProblem, identRuleProblem, isCommentLine } from './hba.js'
import { grantedRoleProblem, usernameProblem } from './names-policy.js'
import { formatPath, issueAt, mapKey, type PathSegment } from './paths.js'
import type {
  BackupConfigSpec, DatabaseNodeSpec, DatabaseSpec, DatabaseUserSpec, OrchestratorOpts, RepositorySpec, RestoreConfigSpec, ServiceSpec, StoredSpec
} from './schemas.js'
import { cronProblem, pgbackrestOptionProblem, pgbackrestValueProblem } from './backup-policy.js'
import { scriptStatementProblem } from './script-policy.js'
import { mergeSecrets } from './secrets.js'
import { settingName, settingProblem } from './settings-policy.js'
import { parseBytes, parseCpus } from './units.js'

export interface ValidationContext {
  /** Host ids that exist in the cluster; when given, every other host id in nodes and services is rejected. */
  knownHostIds?: ReadonlySet<string> | undefined
  /** The stored spec, on update: enables the update rules (immutables, source nodes, kept secrets). */
  previous?: StoredSpec | undefined
  /**
   * The database id: needed for the service-name length budget and to name instances in version-change messages.
   * validateCreateRequest uses the body's id first; when the body has none, pass the id you will generate.
   */
  databaseId?: string | undefined
  /**
   * Every node needs a port and a patroni_port (database or node level), as the anchor demands on systemd: needed
   * by orchestrators that run Postgres directly on the host network.
   */
  requirePorts?: boolean | undefined
}

const RESERVED_USERNAMES: ReadonlySet<string> = new Set(['pgedge_superuser'])
/** Boolean role attributes only: forms carrying a literal (PASSWORD, VALID UNTIL, CONNECTION LIMIT) can't be interpolated safely. */
const ALLOWED_ROLE_ATTRIBUTES: ReadonlySet<string> = new Set([
  'SUPERUSER', 'NOSUPERUSER', 'CREATEDB', 'NOCREATEDB', 'CREATEROLE', 'NOCREATEROLE', 'INHERIT', 'NOINHERIT',
  'LOGIN', 'NOLOGIN', 'REPLICATION', 'NOREPLICATION', 'BYPASSRLS', 'NOBYPASSRLS'
])
/** pgmesh's bounds on resources (the anchor has none): beyond them Docker and the kernel refuse, after the fact. */
const MAX_CPUS = 4096
const MAX_MEMORY_BYTES = 1024 ** 5
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/
const RESERVED_LABEL_PREFIX = 'pgedge.'
/** Docker service names are `<database_id>-<service_id>-<8 char hash>` and must fit in 63 characters. */
const SERVICE_NAME_BUDGET = 53

/** Collects issues against path segments; one instance per validation. */
class IssueList {
  readonly issues: Issue[] = []
  add (segments: readonly PathSegment[], message: string): void {
    this.issues.push(issueAt(segments, message))
  }
}

/** The anchor's cross-field rules, in the anchor's order (validateDatabaseSpec, then the update rules). */
export function semanticIssues (parsed: DatabaseSpec, ctx: ValidationContext, databaseId: string | undefined): Issue[] {
  const out = new IssueList()
  const previous = ctx.previous
  // An update may omit secrets it means to keep; judge "azure_key is required" on what will actually be stored.
  const spec = previous === undefined ? parsed : mergeSecrets(parsed, previous)

  if (CONTROL_CHARACTERS.test(spec.database_name)) out.add(['database_name'], 'must not contain control characters or NUL')
  checkMemory(out, spec.memory, ['memory'])
  checkCpus(out, spec.cpus, ['cpus'])
  checkUniquePorts(out, spec)
  checkUsers(out, spec.database_users ?? [])

  const nodeNames = new Set<string>()
  const nodesWithSource = new Set<string>()
  spec.nodes.forEach((node, i) => {
    if (nodeNames.has(node.name)) out.add(['nodes', i], 'node names must be unique within a database')
    nodeNames.add(node.name)
    if (isSet(node.source_node)) nodesWithSource.add(node.name)
    checkNode(out, spec, node, ['nodes', i], ctx)
  })
  spec.nodes.forEach((node, i) => {
    const source = node.source_node
    if (!isSet(source)) return
    if (!nodeNames.has(source)) out.add(['nodes', i, 'source_node'], 'source node does not exist')
    // A node that is itself being populated from a source has no data to give yet.
    else if (nodesWithSource.has(source)) out.add(['nodes', i, 'source_node'], 'source node must refer to an existing node')
  })

  checkPostgresqlConf(out, spec.postgresql_conf, ['postgresql_conf'])
  checkHbaLines(out, spec.pg_hba_conf, spec.pg_ident_conf, [])
  for (const script of ['post_init', 'post_database_create'] as const) {
    ;(spec.scripts?.[script] ?? []).forEach((statement, i) => {
      const problem = scriptStatementProblem(statement)
      if (problem !== undefined) out.add(['scripts', script, i], problem)
    })
  }
  if (spec.backup_config !== undefined) checkBackupConfig(out, spec.backup_config, ['backup_config'])
  if (spec.restore_config !== undefined) checkRestoreConfig(out, spec.restore_config, ['restore_config'])
  checkOrchestratorOpts(out, spec.orchestrator_opts, ['orchestrator_opts'])

  const serviceIds = new Set<string>()
  ;(spec.services ?? []).forEach((service, i) => {
    if (serviceIds.has(service.service_id)) out.add(['services', i], 'service IDs must be unique within a database')
    serviceIds.add(service.service_id)
    checkService(out, service, ['services', i], spec, nodeNames, databaseId)
  })

  if (previous !== undefined) checkUpdate(out, spec, previous, databaseId)
  if (ctx.knownHostIds !== undefined) checkKnownHosts(out, spec, ctx.knownHostIds)
  return out.issues
}

function checkNode (out: IssueList, spec: DatabaseSpec, node: DatabaseNodeSpec, path: PathSegment[], ctx: ValidationContext): void {
  checkMemory(out, node.memory, [...path, 'memory'])
  checkCpus(out, node.cpus, [...path, 'cpus'])

  const hostIds = new Set<string>()
  node.host_ids.forEach((hostId, j) => {
    if (hostIds.has(hostId)) out.add([...path, 'host_ids', j], 'host IDs must be unique within a node')
    hostIds.add(hostId)
  })

  if (isSet(node.source_node)) {
    if (node.restore_config !== undefined) out.add([...path, 'source_node'], 'specify either source_node or restore_config')
    else if (node.source_node === node.name) out.add([...path, 'source_node'], 'a node cannot use itself as a source node')
  }

  checkPostgresqlConf(out, node.postgresql_conf, [...path, 'postgresql_conf'])
  checkHbaLines(out, node.pg_hba_conf, node.pg_ident_conf, path)
  if (node.backup_config !== undefined) checkBackupConfig(out, node.backup_config, [...path, 'backup_config'])
  if (node.restore_config !== undefined) checkRestoreConfig(out, node.restore_config, [...path, 'restore_config'])

  if (ctx.requirePorts === true) {
    if (spec.port === undefined && node.port === undefined) out.add([...path, 'port'], 'port must be defined')
    if (spec.patroni_port === undefined && node.patroni_port === undefined) out.add([...path, 'patroni_port'], 'patroni_port must be defined')
  }
  checkOrchestratorOpts(out, node.orchestrator_opts, [...path, 'orchestrator_opts'])
}

function checkMemory (out: IssueList, memory: string | undefined, path: PathSegment[]): void {
  if (memory === undefined || memory === '' || memory.length > 16) return // the schema reports the length
  const parsed = parseBytes(memory)
  if (!parsed.ok) out.add(path, parsed.message)
  else if (parsed.value > MAX_MEMORY_BYTES) out.add(path, 'must be at most 1PiB')
}

function checkCpus (out: IssueList, cpus: string | undefined, path: PathSegment[]): void {
  const parsed = cpus === undefined ? undefined : parseCpus(cpus)
  if (parsed !== undefined && parsed > MAX_CPUS) out.add(path, `must be at most ${MAX_CPUS} CPUs`)
}

/**
 * Every fixed port must be unique per host across Postgres, Patroni and service ports. A node port of 0 or unset
 * falls back to the database-level port; 0 after that means "random", which cannot collide.
 */
function checkUniquePorts (out: IssueList, spec: DatabaseSpec): void {
  const portsByHost = new Map<string, Map<number, Set<string>>>()
  const record = (hostId: string, port: number | undefined, path: PathSegment[]): void => {
    if (port === undefined || port === 0) return
    let ports = portsByHost.get(hostId)
    if (ports === undefined) portsByHost.set(hostId, ports = new Map())
    let paths = ports.get(port)
    if (paths === undefined) ports.set(port, paths = new Set())
    paths.add(formatPath(path))
  }
  spec.nodes.forEach((node, i) => {
    const postgresPort = node.port !== undefined && node.port !== 0 ? node.port : spec.port
    const patroniPort = node.patroni_port !== undefined && node.patroni_port !== 0 ? node.patroni_port : spec.patroni_port
    for (const hostId of node.host_ids) {
      record(hostId, postgresPort, ['nodes', i, 'port'])
      record(hostId, patroniPort, ['nodes', i, 'patroni_port'])
    }
  })
  ;(spec.services ?? []).forEach((service, i) => {
    for (const hostId of service.host_ids) record(hostId, service.port, ['services', i, 'port'])
  })
  for (const hostId of [...portsByHost.keys()].sort()) {
    const ports = portsByHost.get(hostId) ?? new Map<number, Set<string>>()
    for (const port of [...ports.keys()].sort((a, b) => a - b)) {
      const paths = [...(ports.get(port) ?? [])].sort()
      if (paths.length > 1) {
        out.add([], `duplicate ports allocated on host '${hostId}': '${port}' duplicated in: ${paths.join(', ')}`)
      }
    }
  }
}

function checkUsers (out: IssueList, users: readonly DatabaseUserSpec[]): void {
  const usernames = new Set<string>()
  let hasOwner = false
  users.forEach((user, i) => {
    if (usernames.has(user.username)) out.add(['database_users', i], 'usernames must be unique within a database')
    if (user.db_owner === true && hasOwner) out.add(['database_users', i], 'cannot have multiple users with db_owner = true')
    usernames.add(user.username)
    if (user.db_owner === true) hasOwner = true
    const nameProblem = usernameProblem(user.username)
    if (RESERVED_USERNAMES.has(user.username)) {
      out.add(['database_users', i, 'username'], `role name '${user.username}' conflicts with a builtin role`)
    } else if (nameProblem !== undefined) out.add(['database_users', i, 'username'], nameProblem)
    if (user.password?.includes('\0') === true) out.add(['database_users', i, 'password'], 'must not contain NUL')
    ;(user.roles ?? []).forEach((role, j) => {
      const problem = grantedRoleProblem(role)
      if (problem !== undefined) out.add(['database_users', i, 'roles', j], problem)
    })
    ;(user.attributes ?? []).forEach((attribute, j) => {
      if (!ALLOWED_ROLE_ATTRIBUTES.has(attribute.toUpperCase())) {
        out.add(['database_users', i, 'attributes', j], `unsupported role attribute ${JSON.stringify(attribute)}`)
      }
    })
  })
}

/**
 * GUC names are case-insensitive in Postgres, so keys are compared lower-cased and trimmed. The anchor's rules
 * (hba_file/ident_file, the replication library) keep its messages; settings-policy.ts has pgmesh's (issue 16).
 */
function checkPostgresqlConf (out: IssueList, conf: Readonly<Record<string, unknown>> | undefined, path: PathSegment[]): void {
  for (const [key, value] of Object.entries(conf ?? {})) {
    const name = settingName(key)
    // Patroni ignores the hba/ident entries it manages when these are set, so pg_hba_conf would silently not apply.
    const problem = name === 'hba_file' || name === 'ident_file'
      ? `${JSON.stringify(key)} is not allowed: it overrides the control-plane-managed pg_hba.conf/pg_ident.conf and would make pg_hba_conf/pg_ident_conf entries ineffective`
      : settingProblem(key, value)
    if (problem !== undefined) out.add([...path, mapKey(key)], problem)
  }
}

/** A line as a message quotes it: cut to 100 characters (the schema allows 1024). */
function quoteLine (line: string): string {
  return JSON.stringify(line.length > 100 ? `${line.slice(0, 100)}…` : line)
}

/** Lines with a line break or NUL would be several lines in the rendered file. */
function lineProblem (line: string, entry: (line: string) => string | undefined, rule: (line: string) => string | undefined): string | undefined {
  if (/[\r\n\0]/.test(line)) return 'must be a single line without NUL'
  if (isCommentLine(line)) return undefined
  const syntax = entry(line)
  return syntax !== undefined ? syntax : rule(line)
}

function checkHbaLines (out: IssueList, hba: readonly string[] | undefined, ident: readonly string[] | undefined, path: PathSegment[]): void {
  ;(hba ?? []).forEach((line, i) => {
    const problem = lineProblem(line, hbaEntryProblem, hbaRuleProblem)
    if (problem !== undefined) out.add([...path, 'pg_hba_conf', i], `invalid pg_hba entry ${quoteLine(line)}: ${problem}`)
  })
  ;(ident ?? []).forEach((line, i) => {
    const problem = lineProblem(line, identEntryProblem, identRuleProblem)
    if (problem !== undefined) out.add([...path, 'pg_ident_conf', i], `invalid pg_ident entry ${quoteLine(line)}: ${problem}`)
  })
}

function checkBackupConfig (out: IssueList, config: BackupConfigSpec, path: PathSegment[]): void {
  config.repositories.forEach((repo, i) => { checkRepository(out, repo, [...path, 'repositories', i]) })
  const repoIds = new Set<string>()
  config.repositories.forEach((repo, i) => {
    // Each repository gets a directory of its own under base_path, named by its id.
    const key = `${repo.type}/${repo.id ?? ''}/${repo.base_path ?? ''}/${repo.s3_bucket ?? ''}/${repo.gcs_bucket ?? ''}/${repo.azure_container ?? ''}`
    if (repoIds.has(key)) out.add([...path, 'repositories', i, 'id'], 'repositories must differ (give each an id)')
    repoIds.add(key)
  })
  const scheduleIds = new Set<string>()
  ;(config.schedules ?? []).forEach((schedule, i) => {
    if (scheduleIds.has(schedule.id)) out.add([...path, 'schedules', i, 'id'], 'schedule IDs must be unique')
    scheduleIds.add(schedule.id)
    const problem = cronProblem(schedule.cron_expression)
    if (problem !== undefined) out.add([...path, 'schedules', i, 'cron_expression'], problem)
  })
}

function checkRestoreConfig (out: IssueList, config: RestoreConfigSpec, path: PathSegment[]): void {
  checkRepository(out, config.repository, [...path, 'repository'])
  checkOptionNames(out, config.restore_options, [...path, 'restore_options'], ['type'])
}

/**
 * Per-type required fields. Fields with a minimum length are "missing" only when absent (the schema already
 * rejects an empty one); base_path and azure_key have no minimum, so empty counts as missing too.
 */
function checkRepository (out: IssueList, repo: RepositorySpec, path: PathSegment[]): void {
  const requireField = (field: keyof RepositorySpec, present: boolean): void => {
    if (!present) out.add([...path, field], `${field} is required for ${repo.type} repositories`)
  }
  switch (repo.type) {
    case 'azure':
      requireField('azure_account', repo.azure_account !== undefined)
      requireField('azure_container', repo.azure_container !== undefined)
      requireField('azure_key', isSet(repo.azure_key))
      break
    case 'posix':
    case 'cifs':
      if (!isSet(repo.base_path)) requireField('base_path', false)
      else if (!repo.base_path.startsWith('/')) out.add([...path, 'base_path'], `base_path must be absolute for ${repo.type} repositories`)
      break
    case 'gcs':
      requireField('gcs_bucket', repo.gcs_bucket !== undefined)
      break
    case 's3':
      requireField('s3_bucket', repo.s3_bucket !== undefined)
      break
  }
  checkOptionNames(out, repo.custom_options, [...path, 'custom_options'])
}

/** pgBackRest options, as passed through custom_options and restore_options (see backup-policy.ts). */
function checkOptionNames (out: IssueList, options: Readonly<Record<string, string>> | undefined, path: PathSegment[], allowed: readonly string[] = []): void {
  for (const [key, value] of Object.entries(options ?? {})) {
    const problem = pgbackrestOptionProblem(key, allowed) ?? pgbackrestValueProblem(value)
    if (problem !== undefined) out.add([...path, mapKey(key)], problem)
  }
}

function checkOrchestratorOpts (out: IssueList, opts: OrchestratorOpts | undefined, path: PathSegment[]): void {
  for (const key of Object.keys(opts?.swarm?.extra_labels ?? {})) {
    if (key.startsWith(RESERVED_LABEL_PREFIX)) {
      out.add([...path, 'swarm', 'extra_labels', mapKey(key)], `labels starting with ${JSON.stringify(RESERVED_LABEL_PREFIX)} are reserved for system use`)
    }
  }
  const destinations = new Set<string>()
  ;(opts?.swarm?.extra_volumes ?? []).forEach((volume, j) => {
    const volumePath = [...path, 'swarm', 'extra_volumes', j]
    const hostProblem = mountPathProblem(volume.host_path)
    if (hostProblem !== undefined) out.add([...volumePath, 'host_path'], hostProblem)
    const destination = volume.destination_path.replace(/\/+$/, '')
    const destinationProblem = mountPathProblem(volume.destination_path) ??
      (CONTAINER_OWN_PATHS.some(own => destination === own || destination.startsWith(`${own}/`) || own.startsWith(`${destination}/`))
        ? `must not be or contain one of the container's own paths (${CONTAINER_OWN_PATHS.join(', ')})`
        : destinations.has(destination) ? 'duplicate destination path' : undefined)
    if (destinationProblem !== undefined) out.add([...volumePath, 'destination_path'], destinationProblem)
    destinations.add(destination)
  })
}

/** Where the Swarm orchestrator mounts an instance's own data, configs and socket: no extra volume may hide them. */
const CONTAINER_OWN_PATHS = ['/var/lib/pgmesh', '/etc/pgmesh', '/var/run/postgresql']

function mountPathProblem (path: string): string | undefined {
  if (!path.startsWith('/')) return 'must be an absolute path'
  if (path.replace(/\/+$/, '') === '') return 'must not be /'
  if (path.split('/').some(part => part === '..' || part === '.')) return 'must not contain . or .. segments'
  if (/[\0\n]/.test(path)) return 'must not contain NUL or newlines'
  return undefined
}

function checkService (
  out: IssueList, service: ServiceSpec, path: PathSegment[], spec: DatabaseSpec, nodeNames: ReadonlySet<string>,
  databaseId: string | undefined
): void {
  if (databaseId !== undefined && databaseId.length + service.service_id.length > SERVICE_NAME_BUDGET) {
    const combined = databaseId.length + service.service_id.length
    out.add([...path, 'service_id'], `database ID and service ID combined must not exceed ${SERVICE_NAME_BUDGET} characters (got ${combined})`)
  }

  const hostIds = new Set<string>()
  service.host_ids.forEach((hostId, j) => {
    if (hostIds.has(hostId)) out.add([...path, 'host_ids', j], 'host IDs must be unique within a service')
    hostIds.add(hostId)
  })

  const connection = service.database_connection
  if (connection !== undefined) {
    const seen = new Set<string>()
    ;(connection.target_nodes ?? []).forEach((nodeName, j) => {
      const nodePath = [...path, 'database_connection', 'target_nodes', j]
      if (nodeName === '') out.add(nodePath, 'node name must not be empty')
      else if (!nodeNames.has(nodeName)) out.add(nodePath, `node ${JSON.stringify(nodeName)} does not exist in the database spec`)
      if (seen.has(nodeName)) out.add(nodePath, `duplicate node name ${JSON.stringify(nodeName)}`)
      seen.add(nodeName)
    })
  }

  if (service.connect_as === '') out.add([...path, 'connect_as'], 'connect_as is required')
  else if (!(spec.database_users ?? []).some(user => user.username === service.connect_as)) {
    out.add([...path, 'connect_as'], `connect_as ${JSON.stringify(service.connect_as)} does not match any database_users entry`)
  }

  // An MCP server allowed to write must not be routed to a standby.
  const sessionAttrs = connection?.target_session_attrs
  if (service.service_type === 'mcp' && service.config?.allow_writes === true && sessionAttrs !== undefined &&
    sessionAttrs !== 'primary' && sessionAttrs !== 'read-write') {
    out.add([...path, 'database_connection', 'target_session_attrs'], `allow_writes requires target_session_attrs 'primary' or 'read-write', got '${sessionAttrs}'`)
  }

  checkMemory(out, service.memory, [...path, 'memory'])
  const opts = service.orchestrator_opts
  checkOrchestratorOpts(out, opts, [...path, 'orchestrator_opts'])
  // Services get their mounts from their type, and their networks are attached without driver options.
  if ((opts?.swarm?.extra_volumes?.length ?? 0) > 0) {
    out.add([...path, 'orchestrator_opts', 'swarm', 'extra_volumes'], 'extra_volumes is not supported for services')
  }
  ;(opts?.swarm?.extra_networks ?? []).forEach((network, j) => {
    if (Object.keys(network.driver_opts ?? {}).length > 0) {
      out.add([...path, 'orchestrator_opts', 'swarm', 'extra_networks', j, 'driver_opts'], 'driver_opts is not supported for services')
    }
  })
}

/** Rules that compare with the stored database (anchor: validateDatabaseUpdate and ValidateChangedSpec). */
function checkUpdate (out: IssueList, spec: DatabaseSpec, previous: StoredSpec, databaseId: string | undefined): void {
  if (spec.database_name !== previous.database_name) out.add(['database_name'], 'database name cannot be changed')

  const previousNodes = new Map(previous.nodes.map(node => [node.name, node]))
  spec.nodes.forEach((node, i) => {
    const previousNode = previousNodes.get(node.name)
    // A node added by this update can only copy data from a node that already runs.
    if (previousNode === undefined) {
      if (isSet(node.source_node) && !previousNodes.has(node.source_node)) {
        out.add(['nodes', i, 'source_node'], 'source node must refer to an existing node')
      }
      return
    }
    // Versions an update omits are kept from the stored spec (applyDefaults), so compare what will be applied.
    const before = previousNode.postgres_version ?? previous.postgres_version
    const after = node.postgres_version ?? previousNode.postgres_version ?? spec.postgres_version ?? previous.postgres_version
    const beforeMajor = majorVersion(before)
    const afterMajor = majorVersion(after)
    if (beforeMajor === undefined || afterMajor === undefined || beforeMajor === afterMajor) return
    const versionPath = node.postgres_version !== undefined ? ['nodes', i, 'postgres_version'] : ['postgres_version']
    for (const hostId of node.host_ids) {
      // Only instances that exist before and after change version; new instances may start on any major.
      if (!previousNode.host_ids.includes(hostId)) continue
      const instance = databaseId === undefined ? `of node ${node.name} on host ${hostId}` : instanceId(databaseId, node.name, hostId)
      out.add(versionPath, `invalid change for instance ${instance}: major version changed from ${beforeMajor} to ${afterMajor}`)
    }
  })
}

function majorVersion (version: string | undefined): number | undefined {
  const major = version === undefined ? NaN : Number.parseInt(version.split('.')[0] ?? '', 10)
  return Number.isNaN(major) ? undefined : major
}

function checkKnownHosts (out: IssueList, spec: DatabaseSpec, knownHostIds: ReadonlySet<string>): void {
  spec.nodes.forEach((node, i) => {
    node.host_ids.forEach((hostId, j) => {
      if (!knownHostIds.has(hostId)) out.add(['nodes', i, 'host_ids', j], `got invalid host ids: ${hostId}`)
    })
  })
  ;(spec.services ?? []).forEach((service, i) => {
    service.host_ids.forEach((hostId, j) => {
      if (!knownHostIds.has(hostId)) out.add(['services', i, 'host_ids', j], `got invalid host ids: ${hostId}`)
    })
  })
}

function isSet (value: string | undefined): value is string {
  return value !== undefined && value !== ''
}


/** The rules of a restore_config given outside a spec (the in-place restore's body), paths prefixed with `path`. */
export function restoreConfigIssues (config: RestoreConfigSpec, path: readonly string[]): Issue[] {
  const out = new IssueList()
  checkRestoreConfig(out, config, [...path])
  return out.issues
}
