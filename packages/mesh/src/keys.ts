import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

/** Loads this host's libp2p identity, creating it on first start, so the peer id is stable across restarts. */
export async function loadOrCreatePeerKey (file: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = await generateKeyPair('Ed25519')
  await writeFileAtomic(file, privateKeyToProtobuf(key), 0o600)
  return key
}

const PSK_HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n'

/**
 * The cluster key is a libp2p private-network (pnet) pre-shared key in its standard text form. Every connection is
 * encrypted with it before anything else happens, so a peer without it cannot even complete a handshake.
 */
export class ClusterKey {
  private constructor (readonly secret: Buffer) {}

  static generate (): ClusterKey {
    return new ClusterKey(randomBytes(32))
  }

  /** Accepts the pnet file form, with or without a trailing newline. */
  static parse (text: string | Uint8Array): ClusterKey {
    const s = typeof text === 'string' ? text : Buffer.from(text).toString('utf8')
    const lines = s.trim().split(/\r?\n/)
    if (lines.length !== 3 || lines[0] !== '/key/swarm/psk/1.0.0/' || lines[1] !== '/base16/' || !/^[0-9a-fA-F]{64}$/.test(lines[2] ?? '')) {
      throw new Error('cluster key must be a libp2p pnet key: "/key/swarm/psk/1.0.0/", "/base16/" and 64 hex digits on three lines')
    }
    return new ClusterKey(Buffer.from(lines[2] ?? '', 'hex'))
  }

  static async load (file: string): Promise<ClusterKey> {
    return ClusterKey.parse(await readFile(file))
  }

  toString (): string {
    return PSK_HEADER + this.secret.toString('hex')
  }

  /** The 95-byte form @libp2p/pnet expects. */
  toPsk (): Uint8Array {
    return new TextEncoder().encode(this.toString())
  }

  /** Public identifier of the cluster key (like the anchor's CA fingerprint): safe to show. */
  fingerprint (): string {
    return createHash('sha256').update(this.secret).digest('hex')
  }

  async save (file: string): Promise<void> {
    await writeFileAtomic(file, this.toString() + '\n', 0o600)
  }
}

async function writeFileAtomic (file: string, data: string | Uint8Array, mode: number): Promise<void> {
  await mkdir(dirname(file), { recursive: true })
  const tmp = `${file}.tmp-${process.pid}`
  await writeFile(tmp, data, { mode, flush: true })
  await rename(tmp, file)
}
