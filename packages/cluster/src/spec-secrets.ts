import { createHash } from 'node:crypto'
import { isSensitiveConfigKey, REPOSITORY_SECRET_FIELDS, ServerError } from '@pgmesh/model'
import { type DataKey, isSealed } from './data-key.js'

/**
 * The secrets of a spec (in the API's shape) as the document holds them: user passwords, repository keys (database-
 * and node-level backup and restore repositories) and service config values under secret-looking keys (the anchor's
 * list, at any depth; a whole subtree under such a key is one secret). Every function returns a new spec.
 */

/** Visits each secret with a path that names it (`database_users/alice/password`); `undefined` from `fn` drops it. */
function mapSecrets (spec: Record<string, unknown>, fn: (path: string, value: unknown) => unknown): Record<string, unknown> {
  const out = structuredClone(spec)
  const put = (target: Record<string, unknown>, key: string, path: string): void => {
    if (target[key] === undefined) return
    const next = fn(path, target[key])
    if (next === undefined) delete target[key]
    else target[key] = next
  }
  const repository = (repo: unknown, path: string): void => {
    if (!isRecord(repo)) return
    for (const field of REPOSITORY_SECRET_FIELDS) put(repo, field, `${path}/${field}`)
  }
  const configs = (holder: unknown, path: string): void => {
    if (!isRecord(holder)) return
    repositoriesOf(holder.backup_config).forEach((repo, i) => { repository(repo, `${path}backup_config/repositories/${i}`) })
    if (isRecord(holder.restore_config)) repository(holder.restore_config.repository, `${path}restore_config/repository`)
  }
  const serviceConfig = (value: unknown, path: string): void => {
    if (Array.isArray(value)) value.forEach((v, i) => { serviceConfig(v, `${path}/${i}`) })
    if (!isRecord(value)) return
    for (const key of Object.keys(value)) {
      if (isSensitiveConfigKey(key)) put(value, key, `${path}/${key}`)
      else serviceConfig(value[key], `${path}/${key}`)
    }
  }
  for (const user of listOf(out.database_users)) put(user, 'password', `database_users/${String(user.username)}/password`)
  configs(out, '')
  for (const node of listOf(out.nodes)) configs(node, `nodes/${String(node.name)}/`)
  for (const service of listOf(out.services)) serviceConfig(service.config, `services/${String(service.service_id)}/config`)
  return out
}

/** Encrypts every secret before it is written to the document. Service config values are sealed as JSON. */
export function sealSecrets (spec: Record<string, unknown>, key: DataKey | undefined): Record<string, unknown> {
  return mapSecrets(spec, (path, value) => {
    if (key === undefined) throw new ServerError('this host has no data key, so it cannot store secrets (copy data.key from a member beside the cluster key, or rejoin)')
    return key.seal(path, path.startsWith('services/') ? JSON.stringify(value) : String(value))
  })
}

/**
 * Decrypts every secret; a value written before secrets were encrypted passes as it is. What cannot be opened (no
 * key, another cluster's key, altered) is dropped and reported by path, never by value.
 */
export function openSecrets (spec: Record<string, unknown>, key: DataKey | undefined): { spec: Record<string, unknown>, problems: string[] } {
  const problems: string[] = []
  const opened = mapSecrets(spec, (path, value) => {
    if (!isSealed(value)) return value
    if (key === undefined) {
      problems.push(`${path}: cannot decrypt: this host has no data key`)
      return undefined
    }
    try {
      const plain = key.open(value)
      return path.startsWith('services/') ? JSON.parse(plain) as unknown : plain
    } catch (err) {
      problems.push(`${path}: cannot decrypt: ${(err as Error).message}`)
      return undefined
    }
  })
  return { spec: opened, problems }
}

/** The spec without its secrets: what a deleted database keeps in the current document. */
export function withoutSecrets (spec: Record<string, unknown>): Record<string, unknown> {
  return mapSecrets(spec, () => undefined)
}

/**
 * What a stored (encrypted) secret shows as in a diff: a short hash of its ciphertext, so a changed secret shows as
 * changed without either value. A value stored before encryption existed shows as `(secret)` only: a hash of a
 * plaintext password could be guessed offline.
 */
export function secretMarker (value: unknown): string {
  if (!isSealed(value)) return '(secret)'
  return `(secret ${createHash('sha256').update(value).digest('hex').slice(0, 8)})`
}

function listOf (value: unknown): Array<Record<string, unknown>> {
  return Array.isArray(value) ? value.filter(isRecord) : []
}

function repositoriesOf (backup: unknown): unknown[] {
  return isRecord(backup) && Array.isArray(backup.repositories) ? backup.repositories : []
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
