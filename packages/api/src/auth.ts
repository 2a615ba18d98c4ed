import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { ApiTokens } from '@pgmesh/cluster'
import { type ApiRole, type ClusterDoc, ForbiddenError, isLoopbackAddress, UnauthorizedError } from '@pgmesh/model'
import type { Context, MiddlewareHandler } from 'hono'

/**
 * How this API is reached. `loopback`: plain HTTP bound to loopback (the quickstart): requests without credentials
 * are operators, but only when they name a loopback host. `insecure`: plain HTTP on another address, explicitly
 * allowed: the same, loudly logged at start. `tls`: every request needs an identity but the public routes.
 */
export type AuthMode = 'loopback' | 'insecure' | 'tls'

export interface AuthOptions {
  mode: AuthMode
  /** Host names, besides loopback ones, requests may name in `loopback` mode (the API URL's). */
  allowedHosts?: readonly string[]
  /** auto TLS before the host has its cluster certificates: loopback clients may init or join it. */
  bootstrapping?: () => boolean
}

export interface Identity { kind: 'certificate' | 'token' | 'local', name: string, role: ApiRole }

/** Routes anyone may call in `tls` mode: discovery, probes, and the join routes (which check the join token). */
export const PUBLIC_PATHS = new Set([
  '/', '/v1/version', '/v1/openapi.json', '/livez', '/readyz',
  '/v1/internal/cluster/join-options', '/v1/internal/cluster/join-document', '/v1/internal/cluster/ca'
])
/** GETs that a viewer may not make: they change state, or hand out credentials. */
const OPERATOR_GETS = new Set(['/v1/cluster/init', '/v1/cluster/join-token', '/v1/cluster/join-tokens', '/v1/tokens'])

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1'])

export interface AuthSources {
  apiTokens: Pick<ApiTokens, 'verify'>
  /** The cluster document, for which hosts (and so host certificates) are still members. */
  doc: () => Readonly<Partial<ClusterDoc>>
}

/**
 * The one place that decides who a request comes from and whether that identity may make it: a browser's
 * cross-site request, a foreign Host header (DNS rebinding), a missing, unknown or removed identity, or a viewer
 * changing something, are refused here, before any route runs.
 */
export function authenticate (options: AuthOptions, sources: AuthSources): MiddlewareHandler {
  const allowedHosts = new Set([...LOOPBACK_HOSTS, ...(options.allowedHosts ?? []).map(h => h.toLowerCase())])
  return async (c, next) => {
    const url = new URL(c.req.url)
    // A browser page of another site must not drive the API with the user's network position or certificate.
    const fetchSite = c.req.header('sec-fetch-site')
    if (fetchSite === 'cross-site' || fetchSite === 'same-site') throw new ForbiddenError('cross-site requests are refused')
    const origin = c.req.header('origin')
    if (origin !== undefined && originHost(origin) !== url.host.toLowerCase()) throw new ForbiddenError('requests from another origin are refused')
    if (options.mode === 'loopback' && !allowedHosts.has(url.hostname.toLowerCase()) && !/^127\.\d+\.\d+\.\d+$/.test(url.hostname)) {
      throw new ForbiddenError(`this API answers only requests for a loopback host or its API URL, not '${url.hostname}'`)
    }
    const path = c.req.path
    // The public routes need no identity, so one that is not (yet) valid does not stand in their way: a joining
    // host presents its certificate to the join routes before it is a member.
    if (PUBLIC_PATHS.has(path) || isConsoleFile(path)) return await next()
    const identity = identify(c, options, sources)
    if (identity === undefined) throw new UnauthorizedError()
    c.set('identity' as never, identity as never)
    if (identity.role === 'viewer' && ((c.req.method !== 'GET' && c.req.method !== 'HEAD') || OPERATOR_GETS.has(path) || path.startsWith('/v1/tokens'))) {
      throw new ForbiddenError('a viewer may only read')
    }
    await next()
  }
}

/** The console's pages and script hold no data (they read the API with the browser's credentials), like `/`. */
function isConsoleFile (path: string): boolean {
  return path === '/ui' || path.startsWith('/ui/')
}

function originHost (origin: string): string | undefined {
  try { return new URL(origin).host.toLowerCase() } catch { return undefined }
}

/** The request's identity; undefined when it has none; throws when it presents one that is not valid. */
function identify (c: Context, options: AuthOptions, sources: AuthSources): Identity | undefined {
  const authorization = c.req.header('authorization')
  if (authorization !== undefined) {
    const secret = /^Bearer\s+(\S+)$/i.exec(authorization)?.[1]
    const token = secret === undefined ? undefined : sources.apiTokens.verify(secret)
    if (token === undefined) throw new UnauthorizedError('the bearer token is not valid (unknown, revoked or expired)')
    return { kind: 'token', name: token.id, role: token.role }
  }
  const socket = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket as TLSSocket | undefined
  if (socket !== undefined && typeof socket.getPeerCertificate === 'function') {
    const cert = socket.getPeerCertificate()
    if (cert !== null && cert.subject !== undefined && Object.keys(cert).length > 0) {
      if (!socket.authorized) throw new UnauthorizedError(`the client certificate is not valid for this cluster: ${String(socket.authorizationError)}`)
      return certificateIdentity(cert.subject.CN, cert.subject.OU, sources.doc())
    }
  }
  if (options.mode !== 'tls') return { kind: 'local', name: 'anonymous', role: 'operator' }
  if (options.bootstrapping?.() === true && isLoopback(socket?.remoteAddress)) return { kind: 'local', name: 'loopback', role: 'operator' }
  return undefined
}

/**
 * A host's certificate counts while its host is a member; any certificate naming a removed host is refused (its
 * holder may still have it). Operator and admin certificates are operators, viewer ones viewers.
 */
function certificateIdentity (cn: string | string[] | undefined, ou: string | string[] | undefined, doc: Readonly<Partial<ClusterDoc>>): Identity {
  const name = Array.isArray(cn) ? cn[0] ?? '' : cn ?? ''
  const role = Array.isArray(ou) ? ou[0] : ou
  const member = doc.hosts?.[name] !== undefined
  const removed = Object.values(doc.removed_peers ?? {}).some(p => p.host_id === name)
  if ((role === 'host' && !member) || (removed && !member)) throw new UnauthorizedError(`the certificate of '${name}' is not of a member of this cluster`)
  return { kind: 'certificate', name, role: role === 'viewer' ? 'viewer' : 'operator' }
}

/** A socket's peer on this machine (an IPv4 peer of a dual-stack socket comes as `::ffff:127.…`). */
function isLoopback (address: string | undefined): boolean {
  return address !== undefined && isLoopbackAddress(address.replace(/^::ffff:/, ''))
}
