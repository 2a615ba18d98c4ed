/**
 * Names a spec gives Postgres and Docker (issue 16): users, granted roles, and the image a database runs.
 *
 * Users and roles become Postgres role names: at most 63 bytes (NAMEDATALEN − 1; a longer name is silently cut,
 * so two users could become one role), no control characters, and never the control plane's own superuser
 * (`pgmesh`: a spec redefining it NOLOGIN or with a password would take the control plane's access away or hand it
 * out), nor the names Postgres reserves (`pg_*`, `public`, `none`). Granted roles exclude the predefined roles that
 * reach the server's OS (`pg_execute_server_program`, `pg_read_server_files`, `pg_write_server_files`) and the
 * control plane's superuser (membership would allow `SET ROLE pgmesh`). The anchor's attribute allow-list still
 * contains SUPERUSER, as pgEdge's quickstart uses it: a spec that grants it makes that user a superuser, with
 * everything a superuser can do; these rules keep a spec that does not from getting there by a side door.
 */
import { SYSTEM_SUPERUSER } from '../records/system-names.js'

export const MAX_ROLE_NAME_BYTES = 63
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/
const RESERVED_ROLE_NAMES: ReadonlySet<string> = new Set([SYSTEM_SUPERUSER, 'public', 'none'])
/** Predefined roles whose members read or write any server file, or run programs, as the server's OS user. */
const REFUSED_GRANTS: ReadonlyMap<string, string> = new Map([
  ['pg_execute_server_program', 'runs programs on the server'],
  ['pg_read_server_files', 'reads any file of the server'],
  ['pg_write_server_files', 'writes any file of the server'],
  [SYSTEM_SUPERUSER, 'is the control plane\'s superuser']
])

function roleNameProblem (name: string): string | undefined {
  if (CONTROL_CHARACTERS.test(name)) return 'must not contain control characters or NUL'
  if (new TextEncoder().encode(name).length > MAX_ROLE_NAME_BYTES) return `must be at most ${MAX_ROLE_NAME_BYTES} bytes long (Postgres cuts longer role names)`
  return undefined
}

/** Why a username is refused (beyond the anchor's `pgedge_superuser` rule), or undefined. */
export function usernameProblem (username: string): string | undefined {
  const problem = roleNameProblem(username)
  if (problem !== undefined) return problem
  if (RESERVED_ROLE_NAMES.has(username) || username.startsWith('pg_')) {
    return `role name ${JSON.stringify(username)} is reserved${username === SYSTEM_SUPERUSER ? ' for the control plane' : ''}`
  }
  return undefined
}

/** Why a role in a user's `roles` may not be granted, or undefined. */
export function grantedRoleProblem (role: string): string | undefined {
  const problem = roleNameProblem(role)
  if (problem !== undefined) return problem
  const reason = REFUSED_GRANTS.get(role)
  return reason === undefined ? undefined : `role ${JSON.stringify(role)} cannot be granted: it ${reason}`
}

/**
 * A Docker image reference: `[registry[:port]/]path[:tag][@algorithm:digest]` (a registry is `localhost` or has a
 * dot or a port, as Docker tells it from a path component), lowercase path components, at most
 * 255 characters (the distribution reference grammar, without its rarely used separators inside components).
 */
const IMAGE_REFERENCE = /^(?:(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)(?::[0-9]+)?\/|[a-zA-Z0-9-]+:[0-9]+\/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$/

export function imageReferenceProblem (image: string): string | undefined {
  if (image.length > 255 || !IMAGE_REFERENCE.test(image)) return 'must be an image reference ([registry/]repository[:tag][@digest])'
  return undefined
}

/**
 * The repository part of an image reference (`registry.example:5000/pg/postgres` for
 * `registry.example:5000/pg/postgres:17@sha256:…`): what an orchestrator's allow-list compares.
 */
export function imageRepository (image: string): string {
  const withoutDigest = image.split('@')[0] ?? ''
  const lastSlash = withoutDigest.lastIndexOf('/')
  const colon = withoutDigest.lastIndexOf(':')
  return colon > lastSlash ? withoutDigest.slice(0, colon) : withoutDigest
}
