import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

/** Where a host keeps the cluster's data key, beside `cluster.key` in its data dir. */
export const DATA_KEY_FILE = 'data.key'

const ENVELOPE_PREFIX = 'pgmesh:enc:v1:'
const IV_BYTES = 12
const TAG_BYTES = 16

/** A secret could not be opened: never says what it held, only why. */
export class SecretEnvelopeError extends Error {}

/**
 * The cluster's data key: 32 random bytes made at cluster init, handed to each joining host with the cluster key,
 * kept in the data dir (0600) and never in the document. It encrypts the spec's secrets (passwords, repository keys,
 * secret-looking service config) before they enter the document, so the document's history, snapshots, join
 * documents and state files hold only ciphertext; and it derives the control plane's superuser password.
 */
export class DataKey {
  private readonly encryptionKey: Buffer
  private readonly ivKey: Buffer

  private constructor (private readonly secret: Buffer) {
    this.encryptionKey = this.derive('pgmesh secret encryption v1')
    this.ivKey = this.derive('pgmesh secret iv v1')
    this.id = createHash('sha256').update('pgmesh data key id').update(secret).digest('hex').slice(0, 8)
  }

  static generate (): DataKey {
    return new DataKey(randomBytes(32))
  }

  /**
   * The data key of a cluster initialized before data keys existed: derived from its cluster key, which every member
   * already holds, so all of them arrive at the same key without any exchange. New clusters get a random one.
   */
  static derivedFromClusterKey (clusterSecret: Uint8Array): DataKey {
    return new DataKey(createHmac('sha256', clusterSecret).update('pgmesh data key from cluster key v1').digest())
  }

  static parse (text: string): DataKey {
    const hex = text.trim()
    if (!/^[0-9a-f]{64}$/i.test(hex)) throw new Error('data key must be 64 hex digits')
    return new DataKey(Buffer.from(hex, 'hex'))
  }

  static async load (file: string): Promise<DataKey> {
    return DataKey.parse(await readFile(file, 'utf8'))
  }

  async save (file: string): Promise<void> {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 })
    const tmp = `${file}.tmp-${process.pid}`
    await writeFile(tmp, this.toString() + '\n', { mode: 0o600, flush: true })
    await rename(tmp, file)
  }

  /** The hex form, for the key file and the join answer only. */
  toString (): string {
    return this.secret.toString('hex')
  }

  /**
   * Public identifier of the key (8 hex digits of its SHA-256), written into every envelope: a rotation can keep old
   * keys by id, and a host holding another key says so instead of failing authentication blindly.
   */
  readonly id: string

  /**
   * The control plane's superuser password for instances over TCP: every host derives the same one, so it is never
   * stored (in the document or elsewhere) or sent; base64url, so it fits a libpq password file as it is.
   */
  superuserPassword (): string {
    return this.derive('pgmesh-superuser').toString('base64url')
  }

  /** A value derived from the key for one purpose (HMAC-SHA256 with a label), so no two uses share key material. */
  derive (label: string): Buffer {
    return createHmac('sha256', this.secret).update(label).digest()
  }

  /**
   * `pgmesh:enc:v1:<key id>:<base64url(iv | ciphertext | tag)>`, AES-256-GCM. The IV is deterministic:
   * HMAC(key, field path + plaintext) truncated to 12 bytes. The document stores the spec field by field and writes
   * only values that differ; a random IV would rewrite every secret on every update (a change in the history for
   * each, and a false conflict whenever two hosts update the same database concurrently). The cost, accepted: equal
   * plaintexts at the same path encrypt equally, which shows only that a secret was rewritten unchanged; the path in
   * the IV keeps two users with the same password from showing it. GCM's nonce-reuse danger does not apply: an IV
   * repeats only for the same path and plaintext, that is for the same ciphertext.
   */
  seal (path: string, plaintext: string): string {
    const iv = createHmac('sha256', this.ivKey).update(path).update('\0').update(plaintext).digest().subarray(0, IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.encryptionKey, iv)
    cipher.setAAD(Buffer.from(ENVELOPE_PREFIX + this.id))
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    return `${ENVELOPE_PREFIX}${this.id}:${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`
  }

  /** The plaintext of an envelope this key sealed; a clear error for another key's envelope or a tampered one. */
  open (envelope: string): string {
    if (!isSealed(envelope)) throw new SecretEnvelopeError('not an encrypted secret')
    const rest = envelope.slice(ENVELOPE_PREFIX.length)
    const colon = rest.indexOf(':')
    const keyId = rest.slice(0, colon)
    if (colon < 0 || !/^[0-9a-f]{8}$/.test(keyId)) throw new SecretEnvelopeError('malformed encrypted secret')
    if (keyId !== this.id) throw new SecretEnvelopeError(`encrypted with data key ${keyId}, but this host holds data key ${this.id}`)
    const raw = Buffer.from(rest.slice(colon + 1), 'base64url')
    if (raw.length < IV_BYTES + TAG_BYTES) throw new SecretEnvelopeError('malformed encrypted secret')
    const decipher = createDecipheriv('aes-256-gcm', this.encryptionKey, raw.subarray(0, IV_BYTES))
    decipher.setAAD(Buffer.from(ENVELOPE_PREFIX + keyId))
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES))
    try {
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8')
    } catch {
      throw new SecretEnvelopeError('encrypted secret failed authentication (altered, or not made by this cluster)')
    }
  }
}

export function isSealed (value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(ENVELOPE_PREFIX)
}
