// An S3-compatible server on loopback for real pgBackRest S3 repositories: s3rver (why: the README's "Backups"),
// over TLS with a throwaway self-signed certificate made here, since pgBackRest talks S3 over TLS only.
import { execFile } from 'node:child_process'
import { chmod, mkdir, readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:https'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { promisify } from 'node:util'

const exec = promisify(execFile)
const require = createRequire(import.meta.url)

export interface LoopbackS3 {
  /** What pgBackRest connects to: `localhost`, the name the certificate holds (pgBackRest checks DNS names only). */
  endpoint: string
  port: number
  bucket: string
  /** The CA pgBackRest verifies the server with (the certificate itself), readable by the Postgres OS user. */
  caFile: string
  /** Where the server keeps objects: `<directory>/<bucket>/<key>`. */
  directory: string
  close: () => Promise<void>
}

/**
 * Starts s3rver in this process on 127.0.0.1 and ::1 (`localhost` may resolve to either), with one bucket and one
 * access key: requests signed with any other key are refused, so a backup that lands proves the key reached pgBackRest.
 */
export async function startLoopbackS3 (root: string, credentials: { key: string, secret: string }, bucket = 'pgmesh-backups'): Promise<LoopbackS3> {
  const dir = join(root, 's3')
  await mkdir(dir, { recursive: true })
  await chmod(dir, 0o755)
  const keyFile = join(dir, 'server.key')
  const caFile = join(dir, 'ca.pem')
  await exec('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1', '-keyout', keyFile, '-out', caFile])
  await chmod(keyFile, 0o600)
  await chmod(caFile, 0o644)
  const tls = { key: await readFile(keyFile), cert: await readFile(caFile) }
  const S3rver = require('s3rver')
  // s3rver's one account takes extra access keys; they are checked against each request's signature.
  const { DUMMY_ACCOUNT: account } = require('s3rver/lib/models/account.js')
  account.createKeyPair(credentials.key, credentials.secret)
  const directory = join(dir, 'data')
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, vhostBuckets: false, configureBuckets: [{ name: bucket }], ...tls })
  const { port } = await server.run() as { port: number }
  // The same server on ::1, best effort: a machine without IPv6 loopback resolves localhost to 127.0.0.1 only.
  let v6: Server | undefined = createServer(tls, server.callback())
  await new Promise<void>(resolve => {
    v6?.once('error', () => { v6 = undefined; resolve() })
    v6?.listen(port, '::1', () => { resolve() })
  })
  return {
    endpoint: 'localhost',
    port,
    bucket,
    caFile,
    directory,
    close: async () => {
      account.revokeAccessKey(credentials.key)
      v6?.closeAllConnections()
      v6?.close()
      await server.close()
    }
  }
}
