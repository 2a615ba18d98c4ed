/** A host answered with an error: the API's `{name, message}` (the message may hold several path-prefixed lines). */
export class ApiRequestError extends Error {
  override readonly name = 'ApiRequestError'
  constructor (
    readonly status: number,
    readonly apiName: string,
    readonly apiMessage: string,
    /** The server that answered. */
    readonly server: string,
    readonly method: string,
    readonly path: string
  ) {
    super(`${apiName}: ${apiMessage}`)
  }
}

/** One server that did not answer, and why. */
export interface Attempt { server: string, error: string }

/**
 * No server answered. `maybeApplied` is true when a request that changes something reached a server and then lost
 * its answer: it may have been applied, so it was not sent to another server.
 */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError'
  constructor (readonly attempts: readonly Attempt[], readonly maybeApplied = false) {
    super(maybeApplied
      ? `no answer from ${attempts.at(-1)?.server ?? '?'} after the request was sent (it may have been applied): ${attempts.at(-1)?.error ?? ''}`
      : `no server answered: ${attempts.map(a => `${a.server} (${a.error})`).join(', ')}`)
  }
}
