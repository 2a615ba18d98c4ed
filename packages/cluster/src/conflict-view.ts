import { isSensitiveConfigKey, redactSpec } from '@pgmesh/model'
import type { FieldConflict } from '@pgmesh/state'
import { decodeSpec } from './spec-encoding.js'

export interface DatabaseConflict {
  /** Field path in the anchor's notation, relative to the database (e.g. `spec.postgresql_conf.work_mem`). */
  path: string
  values: unknown[]
  hosts: string[]
}

const SECRET_LEAF = /(^|\.)(password|s3_key|s3_key_secret|gcs_key|azure_key)$/

/**
 * A conflict as clients see it: the path in the anchor's notation (`spec.nodes[n1].port`), the competing values with
 * every secret masked, and the hosts that wrote them.
 */
export function conflictView (c: FieldConflict, hostOf: (actor: string) => string): DatabaseConflict {
  return {
    path: c.path.replace(/\.items\.([^.]+)/g, '[$1]').replace(/\.order$/, ''),
    values: isSecretPath(c.path)
      ? c.values.map(() => '(secret)')
      : c.values.map(v => isRecordValue(v) && c.path === '' ? redactRecord(v) : maskSecrets(v, isSecretKeyAt(c.path))),
    hosts: c.actors.map(hostOf)
  }
}

/** A whole conflicting database record (two concurrent creates): show it the way GET would. */
function redactRecord (v: Record<string, unknown>): unknown {
  if (isRecordValue(v.spec)) return { ...v, spec: redactSpec(decodeSpec(v.spec) as never) }
  return maskSecrets(v, key => SECRET_LEAF.test(key))
}

/**
 * Whether a conflict at this document path holds a secret: a password or repository key, or anything under a
 * service's config whose key looks secret (the same rule responses use to strip service config).
 */
function isSecretPath (path: string): boolean {
  if (SECRET_LEAF.test(path)) return true
  const segments = path.split('.')
  const services = segments.indexOf('services')
  const config = services < 0 ? -1 : segments.indexOf('config', services)
  return config > 0 && segments.slice(config + 1).some(isSensitiveConfigKey)
}

/** The test for keys inside a conflicting subtree at this path: service configs have their own rule. */
function isSecretKeyAt (path: string): (key: string) => boolean {
  if (!path.split('.').includes('services')) return key => SECRET_LEAF.test(key)
  return key => SECRET_LEAF.test(key) || isSensitiveConfigKey(key)
}

/** A conflicting subtree (a whole user, a service, a repository list): its secret fields masked at any depth. */
function maskSecrets (v: unknown, isSecretKey: (key: string) => boolean): unknown {
  if (Array.isArray(v)) return v.map(x => maskSecrets(x, isSecretKey))
  if (!isRecordValue(v)) return v
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, isSecretKey(k) ? '(secret)' : maskSecrets(x, isSecretKey)]))
}

function isRecordValue (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

