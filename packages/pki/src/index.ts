export {
  type CertificateRole, type CertificateSubject, type IssuedCertificate, type KeyPair, CertificateAuthority, certificateSubject, fingerprint,
  readPem, selfSignedCertificate, writePem, writePrivatePem
} from './pki.js'
