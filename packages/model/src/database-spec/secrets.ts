/**
 * Secrets are write-only. Responses go through redactSpec; an update that omits a secret keeps the stored one
 * through mergeSecrets. Both are pure: they return new specs and never touch their inputs.
 */
import type { BackupConfigSpec, DatabaseNodeSpec, DatabaseSpec, RepositorySpec, RestoreConfigSpec, ServiceSpec } from './schemas.js'
import { cloneTree } from './clone.js'
import { formatBytes, formatCpus, parseBytes, parseCpus } from './units.js'

/** Repository credential fields: never returned, kept from the stored spec when an update leaves them out. */
export const REPOSITORY_SECRET_FIELDS = ['s3_key', 's3_key_secret', 'gcs_key', 'azure_key'] as const

/**
 * Which stored repository an updated one "is", as the anchor decides it (pgbackrest Repository.Identifier): type, id
 * and the fields that locate the data. Changing any of them makes it a different repository, which must not inherit
 * the old one's keys.
 */
export function repositoryIdentity (repo: RepositorySpec): string {
  const locating: Array<string | undefined> = (() => {
    switch (repo.type) {
      case 's3': return [repo.s3_bucket, repo.s3_endpoint, repo.s3_region, repo.base_path]
      case 'gcs': return [repo.gcs_bucket, repo.gcs_endpoint, repo.base_path]
      case 'azure': return [repo.azure_account, repo.azure_container, repo.azure_endpoint, repo.base_path]
      default: return [repo.base_path]
    }
  })()
  return [repo.type, repo.id, ...locating].map(field => field ?? '').join(':')
}

/**
 * Fills omitted secrets in `next` from `previous`: user passwords matched by username, repository keys matched by
 * repositoryIdentity within the same place (database-level with database-level, node with the same-named node).
 * An empty key counts as omitted, as in the anchor, so a GET → edit → POST round trip never wipes credentials.
 */
export function mergeSecrets (next: DatabaseSpec, previous: DatabaseSpec): DatabaseSpec {
  const merged = cloneTree(next)

  const previousPasswords = new Map((previous.database_users ?? []).map(user => [user.username, user.password]))
  for (const user of merged.database_users ?? []) {
    if (user.password === undefined) {
      const stored = previousPasswords.get(user.username)
      if (stored !== undefined) user.password = stored
    }
  }

  fillBackupSecrets(merged.backup_config, previous.backup_config)
  fillRestoreSecrets(merged.restore_config, previous.restore_config)
  const previousNodes = new Map(previous.nodes.map(node => [node.name, node]))
  for (const node of merged.nodes) {
    const previousNode = previousNodes.get(node.name)
    if (previousNode === undefined) continue
    fillBackupSecrets(node.backup_config, previousNode.backup_config)
    fillRestoreSecrets(node.restore_config, previousNode.restore_config)
  }
  return merged
}

function fillBackupSecrets (next: BackupConfigSpec | undefined, previous: BackupConfigSpec | undefined): void {
  if (next === undefined || previous === undefined) return
  const previousByIdentity = new Map(previous.repositories.map(repo => [repositoryIdentity(repo), repo]))
  for (const repo of next.repositories) fillRepositorySecrets(repo, previousByIdentity.get(repositoryIdentity(repo)))
}

/**
 * Deliberate deviation: the anchor copies restore keys without comparing repositories, so pointing restore_config at
 * another bucket would silently reuse the old bucket's keys; here the repository identity must match.
 */
function fillRestoreSecrets (next: RestoreConfigSpec | undefined, previous: RestoreConfigSpec | undefined): void {
  if (next === undefined || previous === undefined) return
  if (repositoryIdentity(next.repository) !== repositoryIdentity(previous.repository)) return
  fillRepositorySecrets(next.repository, previous.repository)
}

function fillRepositorySecrets (repo: RepositorySpec, stored: RepositorySpec | undefined): void {
  if (stored === undefined) return
  for (const field of REPOSITORY_SECRET_FIELDS) {
    const storedValue = stored[field]
    if (isOmitted(repo[field]) && !isOmitted(storedValue)) repo[field] = storedValue
  }
}

function isOmitted (value: string | undefined): boolean {
  return value === undefined || value === ''
}

/**
 * Service config keys that likely hold a secret, by the anchor's list: `token` or `*_token` (so `token_budget`
 * survives), or containing password, secret, api_key/apikey/api-key, credential, private_key/private-key,
 * access_key/access-key, or init_users (MCP bootstrap users embed passwords).
 */
export function isSensitiveConfigKey (key: string): boolean {
  const lower = key.toLowerCase()
  if (lower === 'token' || lower.endsWith('_token')) return true
  return SENSITIVE_KEY_PARTS.some(part => lower.includes(part))
}

const SENSITIVE_KEY_PARTS = [
  'password', 'secret', 'api_key', 'apikey', 'api-key', 'credential', 'private_key', 'private-key',
  'access_key', 'access-key', 'init_users'
]

/**
 * A copy of a service config without secret-looking keys, at any depth (RAG pipelines nest them in arrays); with a
 * `marker`, their values are replaced by what it returns instead of dropped.
 */
export function scrubServiceConfig (config: Readonly<Record<string, unknown>>, marker?: SecretMarker): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(config)) {
    if (!isSensitiveConfigKey(key)) out[key] = scrubValue(value, marker)
    else if (marker !== undefined) out[key] = marker(value)
  }
  return out
}

function scrubValue (value: unknown, marker: SecretMarker | undefined): unknown {
  if (Array.isArray(value)) return value.map(v => scrubValue(v, marker))
  if (value !== null && typeof value === 'object') return scrubServiceConfig(value as Record<string, unknown>, marker)
  return value
}

/** What a secret shows as where a redacted view must still tell values apart (a diff): never the value itself. */
export type SecretMarker = (value: unknown) => unknown

/**
 * The spec as responses show it: no passwords or repository keys, secret-looking service config stripped,
 * `db_owner` always present, cpus and memory re-rendered as the anchor does (`0.5` → `500m`, `16GiB` → `17GB`). With
 * a `marker`, each secret is replaced by what it returns instead of dropped (a diff tells a changed one apart).
 */
export function redactSpec (spec: DatabaseSpec, marker?: SecretMarker): DatabaseSpec {
  const out = cloneTree(spec)
  renderQuantities(out)
  out.database_users = out.database_users?.map(({ password, ...user }) => ({
    ...user, db_owner: user.db_owner ?? false, ...(marker === undefined || password === undefined ? {} : { password: marker(password) as string })
  }))
  stripBackupSecrets(out.backup_config, marker)
  stripRestoreSecrets(out.restore_config, marker)
  for (const node of out.nodes) redactNode(node, marker)
  out.services = out.services?.map(service => redactService(service, marker))
  return dropUndefined(out)
}

function redactNode (node: DatabaseNodeSpec, marker: SecretMarker | undefined): void {
  renderQuantities(node)
  stripBackupSecrets(node.backup_config, marker)
  stripRestoreSecrets(node.restore_config, marker)
}

function redactService (service: ServiceSpec, marker: SecretMarker | undefined): ServiceSpec {
  renderQuantities(service)
  if (service.config !== undefined) service.config = scrubServiceConfig(service.config, marker)
  return service
}

function stripBackupSecrets (config: BackupConfigSpec | undefined, marker: SecretMarker | undefined): void {
  for (const repo of config?.repositories ?? []) stripRepositorySecrets(repo, marker)
}

function stripRestoreSecrets (config: RestoreConfigSpec | undefined, marker: SecretMarker | undefined): void {
  if (config !== undefined) stripRepositorySecrets(config.repository, marker)
}

function stripRepositorySecrets (repo: RepositorySpec, marker: SecretMarker | undefined): void {
  for (const field of REPOSITORY_SECRET_FIELDS) {
    if (marker === undefined || repo[field] === undefined) delete repo[field]
    else repo[field] = marker(repo[field]) as string
  }
}

/** Renders cpus/memory in place; a value that does not parse (never stored by validateSpec) is left as it is. */
function renderQuantities (target: { cpus?: string | undefined, memory?: string | undefined }): void {
  if (target.cpus !== undefined) {
    const cpus = parseCpus(target.cpus)
    if (cpus !== undefined) target.cpus = formatCpus(cpus)
  }
  if (target.memory !== undefined) {
    const bytes = parseBytes(target.memory)
    if (bytes.ok) target.memory = formatBytes(bytes.value)
  }
}

/** Removes keys whose value is undefined, at any depth, so responses serialise the same as they compare. */
function dropUndefined<T> (value: T): T {
  if (Array.isArray(value)) return value.map(dropUndefined) as T
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [key, child] of Object.entries(value)) if (child !== undefined) out[key] = dropUndefined(child)
    return out as T
  }
  return value
}
