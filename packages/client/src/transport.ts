import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'

/**
 * TLS settings for `https://` servers. The security issue defines how pgmesh's API is secured (the anchor uses
 * mutual TLS: a CA, and a client certificate and key); these are handed to Node's TLS as they are, and nothing
 * else is assumed here. Unset: Node's defaults (the system's CAs, no client certificate).
 */
export interface TlsOptions {
  /** PEM: the CA(s) that sign the servers' certificates. */
  ca?: string | Buffer
  /** PEM: this client's certificate and key, for servers that require one. */
  cert?: string | Buffer
  key?: string | Buffer
}

export interface TransportOptions {
  /** How long to wait for the TCP (and TLS) connection before trying the next server. */
  connectTimeoutMs: number
  /** How long to wait for the whole answer once connected. */
  requestTimeoutMs: number
  tls?: TlsOptions
  /** A bearer token of the API, sent as `Authorization: Bearer …`. */
  token?: string
}

export interface RawResponse { status: number, body: string }

/** Why a request got no answer; `sent` tells whether it reached the server (connected) before failing. */
export class TransportError extends Error {
  constructor (message: string, readonly sent: boolean) { super(message) }
}

/**
 * One HTTP request with node:http(s). Not fetch: a connection timeout of its own (a host that is down but not
 * refusing should cost seconds, not fetch's whole timeout, before the next server is tried), knowing whether the
 * request was sent, and TLS options as Node's TLS takes them.
 */
export async function send (url: URL, method: string, body: string | undefined, options: TransportOptions): Promise<RawResponse> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest
  return await new Promise<RawResponse>((resolve, reject) => {
    let connected = false
    const headers: Record<string, string> = { accept: 'application/json' }
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    if (body !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(Buffer.byteLength(body))
    }
    const req = request(url, { method, headers, ...(url.protocol === 'https:' ? options.tls ?? {} : {}) }, (res: IncomingMessage) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        clearTimeout(timer)
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })
      })
      res.on('error', (err) => { fail(err) })
    })
    const fail = (err: Error): void => {
      clearTimeout(timer)
      const code = (err as NodeJS.ErrnoException).code
      reject(new TransportError(code === undefined ? err.message : `${code}${err.message.includes(code) ? '' : ` ${err.message}`}`, connected))
    }
    let timer = setTimeout(() => { req.destroy(new Error(`no connection within ${options.connectTimeoutMs} ms`)) }, options.connectTimeoutMs)
    req.on('socket', (socket) => {
      const onConnected = (): void => {
        connected = true
        clearTimeout(timer)
        timer = setTimeout(() => { req.destroy(new Error(`no answer within ${options.requestTimeoutMs} ms`)) }, options.requestTimeoutMs)
      }
      // A reused keep-alive socket is connected already.
      if (!socket.connecting) onConnected()
      else socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', onConnected)
    })
    req.on('error', fail)
    req.end(body)
  })
}
