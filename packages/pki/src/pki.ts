// @peculiar/x509 resolves its parts with tsyringe, which needs the Reflect metadata API loaded first.
import 'reflect-metadata'
import { createHash, createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto'
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { isIP } from 'node:net'
import * as x509 from '@peculiar/x509'

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
const DAY_MS = 86_400_000
/** The cluster CA outlives any host; it is not rotated (README: Security). */
const CA_DAYS = 3650
const LEAF_DAYS = 825

/**
 * What a certificate lets its holder be: a host of the cluster (server and client), or a person or program with a
 * role of the API. Carried in the subject's OU, so any member reads it from the certificate alone.
 */
export type CertificateRole = 'host' | 'operator' | 'viewer'

export interface CertificateSubject { commonName: string, role: CertificateRole | undefined }

/** A certificate and its private key, PEM. */
export interface KeyPair { cert: string, key: string }
export interface IssuedCertificate extends KeyPair { fingerprint: string }

/** sha256 (hex) of a PEM certificate's DER: the fingerprint a join token carries (the anchor's form). */
export function fingerprint (certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex')
}

/** The CN and the pgmesh role (OU) of a PEM certificate's subject. */
export function certificateSubject (certPem: string): CertificateSubject {
  return subjectOf(new X509Certificate(certPem).subject)
}

function subjectOf (subject: string): CertificateSubject {
  const fields = new Map(subject.split('\n').map(line => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))
  const ou = fields.get('OU')
  return { commonName: fields.get('CN') ?? '', role: ou === 'host' || ou === 'operator' || ou === 'viewer' ? ou : undefined }
}

/** The cluster's certificate authority: creates itself, loads from PEM, and issues host and client certificates. */
export class CertificateAuthority {
  private constructor (readonly cert: string, readonly key: string, private readonly certificate: x509.X509Certificate, private readonly signingKey: CryptoKey) {}

  static async create (clusterId: string): Promise<CertificateAuthority> {
    const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']) as CryptoKeyPair
    const now = Date.now()
    const certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=pgmesh cluster ${escapeName(clusterId)} CA`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + CA_DAYS * DAY_MS),
      signingAlgorithm: ALGORITHM,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
      ]
    })
    return new CertificateAuthority(certificate.toString('pem'), await privateKeyPem(keys.privateKey), certificate, keys.privateKey)
  }

  static async load (cert: string, key: string): Promise<CertificateAuthority> {
    const der = createPrivateKey(key).export({ format: 'der', type: 'pkcs8' })
    const signingKey = await webcrypto.subtle.importKey('pkcs8', der, ALGORITHM, true, ['sign'])
    return new CertificateAuthority(cert, key, new x509.X509Certificate(cert), signingKey)
  }

  get fingerprint (): string {
    return fingerprint(this.cert)
  }

  /**
   * A certificate signed by this CA, usable as server and client certificate. `names` become SANs (IP addresses or
   * DNS names); the role goes into the OU.
   */
  async issue (commonName: string, role: CertificateRole, names: readonly string[] = []): Promise<IssuedCertificate> {
    const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']) as CryptoKeyPair
    const now = Date.now()
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${escapeName(commonName)}, OU=${role}`,
      issuer: this.certificate.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + LEAF_DAYS * DAY_MS),
      signingAlgorithm: ALGORITHM,
      publicKey: keys.publicKey,
      signingKey: this.signingKey,
      extensions: [...leafExtensions(names), await x509.AuthorityKeyIdentifierExtension.create(this.certificate)]
    })
    const cert = certificate.toString('pem')
    return { cert, key: await privateKeyPem(keys.privateKey), fingerprint: fingerprint(cert) }
  }
}

/** A self-signed certificate for a host that has no cluster yet (HTTPS before `cluster init`). */
export async function selfSignedCertificate (commonName: string, names: readonly string[]): Promise<IssuedCertificate> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']) as CryptoKeyPair
  const now = Date.now()
  // Its own trust anchor: a client can pin it with `--ca-cert` (curl --cacert) before the cluster CA exists.
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${escapeName(commonName)}, OU=host`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + LEAF_DAYS * DAY_MS),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [...leafExtensions(names), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)]
  })
  const cert = certificate.toString('pem')
  return { cert, key: await privateKeyPem(keys.privateKey), fingerprint: fingerprint(cert) }
}

function leafExtensions (names: readonly string[]): x509.Extension[] {
  const sans = [...new Set(names.filter(n => n !== ''))].map(n => isIP(n) === 0 ? { type: 'dns' as const, value: n } : { type: 'ip' as const, value: n })
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    ...(sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(sans)] : [])
  ]
}

/** Writes a certificate (or any public PEM): 0644, atomically, its directory 0700. */
export async function writePem (file: string, pem: string): Promise<void> {
  await writeAtomic(file, pem, 0o644)
}

/** Writes a private key: 0600, atomically, its directory 0700. */
export async function writePrivatePem (file: string, pem: string): Promise<void> {
  await writeAtomic(file, pem, 0o600)
}

export async function readPem (file: string): Promise<string> {
  return await readFile(file, 'utf8')
}

async function writeAtomic (file: string, text: string, mode: number): Promise<void> {
  const dir = dirname(file)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await chmod(dir, 0o700)
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`)
  // Created with its final mode: a key is never readable by others, not even for a moment.
  await writeFile(tmp, text, { mode })
  await chmod(tmp, mode)
  await rename(tmp, file)
}

async function privateKeyPem (key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key)
  return x509.PemConverter.encode(der, 'PRIVATE KEY')
}

function serial (): string {
  // Positive, 16 bytes: unique without a registry of issued serials.
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0] ?? 0) & 0x7f
  return bytes.toString('hex')
}

/** Distinguished-name special characters in an id are escaped (ids are identifiers, but the cluster id may not be). */
function escapeName (value: string): string {
  return value.replace(/([,+"\\<>;=])/g, '\\$1')
}
