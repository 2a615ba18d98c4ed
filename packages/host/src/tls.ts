import { EventEmitter } from 'node:events'
import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CertificateAuthority, fingerprint, readPem, selfSignedCertificate, writePem, writePrivatePem } from '@pgmesh/pki'
import { InvalidJoinTokenError } from '@pgmesh/model'

/**
 * How the API is secured. `none`: plain HTTP (loopback, or explicitly insecure). `configured`: the operator's CA and
 * certificates (the anchor's `http.*` settings). `auto`: pgmesh keeps a cluster CA and per-host certificates in
 * `<data-dir>/tls/`.
 */
export type TlsSettings =
  | { mode: 'none' }
  | { mode: 'configured', caCert: string, serverCert: string, serverKey: string, clientCert?: string, clientKey?: string }
  | { mode: 'auto' }

/** What a joining host receives in auto mode (the anchor's `credentials`, base64 PEM). */
export interface JoinCredentials {
  ca_cert: string
  ca_key: string
  server_cert: string
  server_key: string
  client_cert: string
  client_key: string
}

/** Node TLS options for this host's calls to members: the CA it trusts and the certificate it presents. */
export interface MemberTls { ca: string, cert?: string, key?: string }

export const TLS_DIR = 'tls'
const FILES = { ca: 'ca.crt', caKey: 'ca.key', cert: 'host.crt', key: 'host.key', adminCert: 'admin.crt', adminKey: 'admin.key', bootCert: 'bootstrap.crt', bootKey: 'bootstrap.key' }

/**
 * This host's certificates for the API and for its calls to other members; emits `changed` when the server's
 * certificate changes (auto mode: at init and join), so the listener swaps it without a restart.
 */
export class HostTls extends EventEmitter<{ changed: [] }> {
  private ca: CertificateAuthority | undefined
  private caCert: string | undefined
  private cert = ''
  private key = ''
  private clientCert: string | undefined
  private clientKey: string | undefined

  private constructor (readonly settings: TlsSettings, private readonly dir: string, private readonly hostId: string, private readonly names: () => string[]) {
    super()
  }

  static async open (settings: TlsSettings, dataDir: string, hostId: string, names: () => string[]): Promise<HostTls> {
    const tls = new HostTls(settings, join(dataDir, TLS_DIR), hostId, names)
    await tls.load()
    return tls
  }

  get enabled (): boolean { return this.settings.mode !== 'none' }
  /** auto mode before the host has the cluster's certificates: only loopback clients may init or join it. */
  get bootstrapping (): boolean { return this.settings.mode === 'auto' && this.caCert === undefined }

  /** The server's secure context options: its certificate, and the CA client certificates are checked against. */
  serverOptions (): { cert: string, key: string, ca: string } {
    return { cert: this.cert, key: this.key, ca: this.caCert ?? this.cert }
  }

  /** sha256 of the CA certificate that join tokens name; undefined without TLS. */
  fingerprint (): string | undefined {
    return this.caCert === undefined ? undefined : fingerprint(this.caCert)
  }

  memberTls (): MemberTls | undefined {
    if (this.caCert === undefined) return undefined
    return { ca: this.caCert, ...(this.clientCert === undefined || this.clientKey === undefined ? {} : { cert: this.clientCert, key: this.clientKey }) }
  }

  get caCertificate (): string | undefined { return this.caCert }

  /** auto: creates the cluster CA, this host's certificate and the admin's client certificate, and switches to them. */
  async createCluster (clusterId: string): Promise<void> {
    if (this.settings.mode !== 'auto') return
    const ca = await CertificateAuthority.create(clusterId)
    const host = await ca.issue(this.hostId, 'host', this.sanNames())
    const admin = await ca.issue('admin', 'operator')
    await writePrivatePem(this.path(FILES.caKey), ca.key)
    await writePem(this.path(FILES.ca), ca.cert)
    await writePrivatePem(this.path(FILES.key), host.key)
    await writePem(this.path(FILES.cert), host.cert)
    await writePrivatePem(this.path(FILES.adminKey), admin.key)
    await writePem(this.path(FILES.adminCert), admin.cert)
    await this.load()
  }

  /** auto: what a member hands a joining host: the CA (with its key: any member admits hosts) and its own certificate. */
  async credentialsFor (hostId: string, names: readonly string[]): Promise<JoinCredentials | undefined> {
    if (this.settings.mode !== 'auto' || this.ca === undefined) return undefined
    const issued = await this.ca.issue(hostId, 'host', names)
    const b64 = (s: string): string => Buffer.from(s).toString('base64')
    return { ca_cert: b64(this.ca.cert), ca_key: b64(this.ca.key), server_cert: b64(issued.cert), server_key: b64(issued.key), client_cert: b64(issued.cert), client_key: b64(issued.key) }
  }

  /** auto: a joining host takes the credentials it was given, after checking the CA is the one its token names. */
  async adopt (credentials: JoinCredentials, expectedFingerprint: string): Promise<void> {
    const text = (s: string): string => Buffer.from(s, 'base64').toString('utf8')
    const caCert = text(credentials.ca_cert)
    if (fingerprint(caCert) !== expectedFingerprint) throw new InvalidJoinTokenError('the member\'s CA is not the one the join token names')
    await writePrivatePem(this.path(FILES.caKey), text(credentials.ca_key))
    await writePem(this.path(FILES.ca), caCert)
    await writePrivatePem(this.path(FILES.key), text(credentials.server_key))
    await writePem(this.path(FILES.cert), text(credentials.server_cert))
    await this.load()
    // Every member can admit hosts, so every member can also give its operator a client certificate.
    const admin = await this.ca?.issue('admin', 'operator')
    if (admin !== undefined) {
      await writePrivatePem(this.path(FILES.adminKey), admin.key)
      await writePem(this.path(FILES.adminCert), admin.cert)
    }
  }

  /** The names this host's certificate is valid for: its client addresses, its API URL's host and loopback. */
  sanNames (): string[] {
    return [...new Set([...this.names(), '127.0.0.1', '::1', 'localhost'])]
  }

  private path (file: string): string {
    return join(this.dir, file)
  }

  private async load (): Promise<void> {
    const s = this.settings
    if (s.mode === 'none') return
    if (s.mode === 'configured') {
      this.caCert = await readFile(s.caCert, 'utf8')
      this.cert = await readFile(s.serverCert, 'utf8')
      this.key = await readFile(s.serverKey, 'utf8')
      if (s.clientCert !== undefined && s.clientKey !== undefined) {
        this.clientCert = await readFile(s.clientCert, 'utf8')
        this.clientKey = await readFile(s.clientKey, 'utf8')
      }
      return
    }
    if (await exists(this.path(FILES.ca))) {
      this.caCert = await readPem(this.path(FILES.ca))
      this.ca = await CertificateAuthority.load(this.caCert, await readPem(this.path(FILES.caKey)))
      this.cert = await readPem(this.path(FILES.cert))
      this.key = await readPem(this.path(FILES.key))
      // A host's certificate is also its client certificate towards the other members.
      this.clientCert = this.cert
      this.clientKey = this.key
    } else {
      if (!(await exists(this.path(FILES.bootCert)))) {
        const boot = await selfSignedCertificate(this.hostId, this.sanNames())
        await writePrivatePem(this.path(FILES.bootKey), boot.key)
        await writePem(this.path(FILES.bootCert), boot.cert)
      }
      this.cert = await readPem(this.path(FILES.bootCert))
      this.key = await readPem(this.path(FILES.bootKey))
    }
    this.emit('changed')
  }
}

async function exists (file: string): Promise<boolean> {
  try { await access(file); return true } catch { return false }
}
