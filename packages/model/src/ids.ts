import { createHash, randomUUID } from 'node:crypto'
import { v7 as uuidv7 } from 'uuid'

const IDENTIFIER = /^[a-z0-9](?:[a-z0-9-]{0,34}[a-z0-9])?$/

export const IDENTIFIER_MESSAGE = 'valid IDs must be 1-36 characters long, contain only lowercase letters, digits, and hyphens, start and end with a letter or digit, and not contain two consecutive hyphens'

/** The anchor's Identifier rule for database, host, cluster and tenant ids. */
export function isIdentifier (value: string): boolean {
  return IDENTIFIER.test(value) && !value.includes('--')
}

/** Time-ordered ids for tasks and task log entries, as the anchor uses. */
export function newTaskId (): string {
  return uuidv7()
}

export function newUuid (): string {
  return randomUUID()
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
export function isUuid (value: string): boolean {
  return UUID.test(value)
}

/** First 8 chars of base36(sha1(host_id)), as the anchor derives the host part of instance ids. */
export function hostIdHash (hostId: string): string {
  const digest = createHash('sha1').update(hostId).digest()
  return BigInt('0x' + digest.toString('hex')).toString(36).slice(0, 8)
}

/** `<database_id>-<node_name>-<hash8(host_id)>`, e.g. `storefront-n1-689qacsi` for host `host-1`. */
export function instanceId (databaseId: string, nodeName: string, hostId: string): string {
  return `${databaseId}-${nodeName}-${hostIdHash(hostId)}`
}
