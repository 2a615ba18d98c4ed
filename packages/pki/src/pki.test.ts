import { createServer, connect, type TLSSocket } from 'node:tls'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { CertificateAuthority, certificateSubject, fingerprint, readPem, selfSignedCertificate, writePem, writePrivatePem } from './pki.js'

const dirs: string[] = []
afterAll(async () => { await Promise.all(dirs.map(async d => { await rm(d, { recursive: true, force: true }) })) })

/** A real TLS handshake: the server requires a client certificate of `ca` and reports who connected. */
async function handshake (ca: string, server: { cert: string, key: string }, client: { cert?: string, key?: string, ca: string }, servername = 'localhost'): Promise<{ authorized: boolean, subject: string | undefined, serverVerified: boolean }> {
  const srv = createServer({ ...server, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' })
  const seen = new Promise<{ authorized: boolean, subject: string | undefined }>((resolve) => {
    srv.on('secureConnection', (socket: TLSSocket) => {
      const peer = socket.getPeerCertificate()
      resolve({ authorized: socket.authorized, subject: typeof peer.subject?.CN === 'string' ? peer.subject.CN : undefined })
      socket.end()
    })
  })
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as { port: number }).port
  const serverVerified = await new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, servername, ...client, rejectUnauthorized: false }, () => { resolve(socket.authorized); socket.end() })
    socket.on('error', () => { resolve(false) })
  })
  const result = await seen
  srv.close()
  return { ...result, serverVerified }
}

describe('CertificateAuthority', () => {
  it('issues host certificates that verify as server and client against the CA, with the role in the OU', async () => {
    const ca = await CertificateAuthority.create('prod')
    const host = await ca.issue('host-1', 'host', ['127.0.0.1', '::1', 'localhost', 'db1.example'])
    const x = new X509Certificate(host.cert)
    expect(x.verify(new X509Certificate(ca.cert).publicKey)).toBe(true)
    expect(x.subjectAltName).toContain('DNS:localhost')
    expect(x.subjectAltName).toContain('IP Address:127.0.0.1')
    expect(certificateSubject(host.cert)).toEqual({ commonName: 'host-1', role: 'host' })
    expect(host.fingerprint).toBe(fingerprint(host.cert))
    const res = await handshake(ca.cert, host, { ...await ca.issue('admin', 'operator'), ca: ca.cert })
    expect(res).toEqual({ authorized: true, subject: 'admin', serverVerified: true })
  })

  it('is loaded back from its PEM and issues certificates the original CA verifies', async () => {
    const ca = await CertificateAuthority.create('prod')
    const loaded = await CertificateAuthority.load(ca.cert, ca.key)
    expect(loaded.fingerprint).toBe(ca.fingerprint)
    const viewer = await loaded.issue('grafana', 'viewer')
    expect(new X509Certificate(viewer.cert).verify(new X509Certificate(ca.cert).publicKey)).toBe(true)
    expect(certificateSubject(viewer.cert).role).toBe('viewer')
  })

  it('gives another CA\'s certificates and self-signed ones no standing', async () => {
    const ca = await CertificateAuthority.create('prod')
    const other = await CertificateAuthority.create('prod')
    expect(other.fingerprint).not.toBe(ca.fingerprint)
    const host = await ca.issue('host-1', 'host', ['localhost'])
    expect((await handshake(ca.cert, host, { ...await other.issue('admin', 'operator'), ca: ca.cert })).authorized).toBe(false)
    const selfSigned = await selfSignedCertificate('mallory', ['localhost'])
    expect((await handshake(ca.cert, host, { ...selfSigned, ca: ca.cert })).authorized).toBe(false)
    // And a client that trusts only the CA does not trust a server of another.
    expect((await handshake(ca.cert, await other.issue('host-2', 'host', ['localhost']), { ca: ca.cert })).serverVerified).toBe(false)
  })
})

describe('selfSignedCertificate', () => {
  it('is its own trust anchor: a client pinning it verifies the server', async () => {
    const boot = await selfSignedCertificate('host-1', ['127.0.0.1', 'localhost'])
    expect(certificateSubject(boot.cert)).toEqual({ commonName: 'host-1', role: 'host' })
    expect((await handshake(boot.cert, boot, { ca: boot.cert })).serverVerified).toBe(true)
  })
})

describe('PEM files', () => {
  it('writes keys 0600 and certificates 0644 in a 0700 directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgmesh-pki-'))
    dirs.push(dir)
    const ca = await CertificateAuthority.create('c')
    await writePrivatePem(join(dir, 'tls', 'ca.key'), ca.key)
    await writePem(join(dir, 'tls', 'ca.crt'), ca.cert)
    expect((await stat(join(dir, 'tls'))).mode & 0o777).toBe(0o700)
    expect((await stat(join(dir, 'tls', 'ca.key'))).mode & 0o777).toBe(0o600)
    expect((await stat(join(dir, 'tls', 'ca.crt'))).mode & 0o777).toBe(0o644)
    expect(await readPem(join(dir, 'tls', 'ca.key'))).toBe(ca.key)
  })
})
