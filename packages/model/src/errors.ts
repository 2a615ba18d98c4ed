/**
 * Every error the API answers with. One class per stable `name`, each carrying its HTTP status, so the API turns
 * any thrown ApiError into the anchor's `{name, message}` body in one place.
 */
export abstract class ApiError extends Error {
  abstract readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 415 | 429 | 500 | 503
  /** Sent as `Retry-After` (seconds) when set: the client may try again then. */
  retryAfterSeconds?: number
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
  }

  toJSON (): { name: string, message: string } {
    return { name: this.name, message: this.message }
  }
}

function apiError<N extends string, S extends ApiError['status']> (name: N, status: S, defaultMessage: string) {
  return class extends ApiError {
    static readonly errorName = name
    override readonly name = name
    readonly status = status
    constructor (message: string = defaultMessage, options?: { cause?: unknown }) {
      super(message, options)
    }
  }
}

export const ClusterAlreadyInitializedError = apiError('cluster_already_initialized', 409, 'this operation is invalid on an initialized cluster')
export const ClusterNotInitializedError = apiError('cluster_not_initialized', 409, 'this operation is invalid on an uninitialized cluster')
export const DatabaseNotModifiableError = apiError('database_not_modifiable', 409, 'the target database is not modifiable in its current state')
export const OperationAlreadyInProgressError = apiError('operation_already_in_progress', 409, 'an operation is already in progress for the given entity')
export const DatabaseAlreadyExistsError = apiError('database_already_exists', 409, 'a database already exists with the given ID')
export const InvalidInputError = apiError('invalid_input', 400, 'invalid input')
/** Malformed request bodies (not JSON at all); schema violations are InvalidInputError. */
export const DecodePayloadError = apiError('decode_payload', 400, 'the request body could not be decoded')
/** pgmesh: a request body over the API's size limit (the anchor has no limit, so no name for it). */
export const PayloadTooLargeError = apiError('payload_too_large', 413, 'the request body is too large')
/** pgmesh: a request body that is not declared as JSON. */
export const UnsupportedMediaTypeError = apiError('unsupported_media_type', 415, 'the request body must be JSON (Content-Type: application/json)')
export const InvalidJoinTokenError = apiError('invalid_join_token', 401, 'the given join token is invalid')
/** pgmesh: a request that carries no valid identity (client certificate or bearer token) where one is needed. */
export const UnauthorizedError = apiError('unauthorized', 401, 'authentication required: a client certificate or a bearer token')
/** pgmesh: an identity whose role does not allow the request, or a request refused for where it comes from. */
export const ForbiddenError = apiError('forbidden', 403, 'not allowed')
export const NotFoundError = apiError('not_found', 404, 'not found')
export const ServerError = apiError('server_error', 500, 'internal server error')
export const ShuttingDownError = apiError('shutting_down', 503, 'the server is shutting down')
/** pgmesh: a client over its request rate (429 with Retry-After). */
export const TooManyRequestsError = apiError('too_many_requests', 429, 'too many requests from this client; retry after the time in Retry-After')
/** pgmesh: too many document writes in flight on this host (503 with Retry-After); reads stay answered meanwhile. */
export const ServerBusyError = apiError('server_busy', 503, 'this host has too many writes in progress; retry after the time in Retry-After')

/** One problem at one place in the input; `path` is `nodes[0].host_ids[1]` style, empty for the whole input. */
export interface Issue { path: string, message: string }

/** Renders issues the anchor's way: `path: message` lines joined by newlines. */
export function formatIssues (issues: readonly Issue[]): string {
  return issues.map(i => i.path === '' ? i.message : `${i.path}: ${i.message}`).join('\n')
}

export function invalidInput (issues: readonly Issue[]): InstanceType<typeof InvalidInputError> {
  return new InvalidInputError(formatIssues(issues))
}

/** Joins path segments: strings become `.field` (or `[key]` when `mapKey`), numbers `[i]`. */
export function joinPath (segments: ReadonlyArray<string | number | symbol>): string {
  let out = ''
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`
    else if (out === '') out = String(s)
    else out += `.${String(s)}`
  }
  return out
}

/**
 * Not an API error: an action on an instance that can never succeed as the spec asks (a major version change of an
 * existing instance). The reconciler does not retry it: the instance is reported failed with this message, and the
 * task fails, until the spec changes (its generation moves).
 */
export class TerminalError extends Error {
  override readonly name = 'TerminalError'
}

/** By name, so an error from another copy of this package counts too. */
export function isTerminalError (err: unknown): err is TerminalError {
  return err instanceof Error && err.name === 'TerminalError'
}
