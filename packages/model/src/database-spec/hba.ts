/**
 * Minimal pg_hba.conf / pg_ident.conf line checks, ported from the anchor (server/internal/postgres/hba/parse.go).
 * Like the anchor, they reject only lines that are not recognisable entries at all (unknown connection type, too
 * few fields, unterminated quote); auth methods, addresses and options are left for Postgres to judge on reload.
 * pgmesh's own rules (no includes, no trust over the network, real addresses) are hbaRuleProblem/identRuleProblem.
 */
import { isIP } from 'node:net'

const INCLUDE_TYPES: ReadonlySet<string> = new Set(['include', 'include_if_exists', 'include_dir'])
const ENTRY_TYPES: ReadonlySet<string> = new Set([
  'local', 'host', 'hostssl', 'hostnossl', 'hostgssenc', 'hostnogssenc', ...INCLUDE_TYPES
])

/** Blank and comment lines carry no rule and are skipped. */
export function isCommentLine (line: string): boolean {
  const trimmed = line.trim()
  return trimmed === '' || trimmed.startsWith('#')
}

/** Whitespace-separated fields; double quotes group, an unquoted `#` ends the line. Error text on a bad quote. */
function tokenize (line: string): string[] | string {
  const tokens: string[] = []
  let current = ''
  let inQuote = false
  const flush = (): void => {
    if (current !== '') tokens.push(current)
    current = ''
  }
  for (const ch of line) {
    if (ch === '"') inQuote = !inQuote
    else if (ch === '#' && !inQuote) {
      flush()
      return tokens
    } else if (/\s/.test(ch) && !inQuote) flush()
    else current += ch
  }
  if (inQuote) return 'unterminated quoted string'
  flush()
  return tokens
}

/** Why a pg_hba.conf line is not an entry, or undefined when it is one. */
export function hbaEntryProblem (line: string): string | undefined {
  const tokens = tokenize(line)
  if (typeof tokens === 'string') return tokens
  const type = tokens[0]
  if (type === undefined) return 'empty entry'
  if (!ENTRY_TYPES.has(type)) return `unknown connection type ${JSON.stringify(type)}`
  if (INCLUDE_TYPES.has(type)) return tokens.length === 2 ? undefined : `${type} requires exactly one path argument`
  if (type === 'local') return tokens.length >= 4 ? undefined : 'local entry requires database, user, and an auth method'
  return tokens.length >= 5 ? undefined : `${type} entry requires database, user, address, and an auth method`
}

/** Why a pg_ident.conf line is not a mapping or include, or undefined when it is one. */
export function identEntryProblem (line: string): string | undefined {
  const tokens = tokenize(line)
  if (typeof tokens === 'string') return tokens
  const first = tokens[0]
  if (first === undefined) return 'empty entry'
  if (INCLUDE_TYPES.has(first)) return tokens.length === 2 ? undefined : `${first} requires exactly one path argument`
  return tokens.length === 3 ? undefined : 'pg_ident entry requires map-name, system-username, and postgres-username'
}

// --- pgmesh's rules beyond the anchor's syntax checks (issue 16) -------------------------------------------------

/** Every authentication method Postgres 15–18 knows; any other name stops a reload. */
const AUTH_METHODS: ReadonlySet<string> = new Set([
  'trust', 'reject', 'scram-sha-256', 'md5', 'password', 'gss', 'sspi', 'ident', 'peer', 'ldap', 'radius', 'cert', 'pam', 'bsd', 'oauth'
])
/**
 * Methods refused on network (`host*`) rules: `trust` lets anyone who can reach the port in as any user, `ident`
 * believes what the client's own machine says, and `peer` exists only for local sockets. Local (`local`) rules may
 * use them: the socket directory is 0700, so only the server's OS user reaches it.
 */
const NETWORK_METHODS_REFUSED: ReadonlyMap<string, string> = new Map([
  ['trust', 'method trust is not allowed on network connections: anyone reaching the port would log in as any user without a password'],
  ['ident', 'method ident is not allowed on network connections: it trusts what the client\'s machine says about its user'],
  ['peer', 'method peer works only on local connections']
])
const ADDRESS_KEYWORDS: ReadonlySet<string> = new Set(['all', 'samehost', 'samenet'])
const HOSTNAME = /^\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*$/
const INCLUDES_REFUSED = 'include directives are not allowed: they make the server read files of its host'

/** An address of a network rule: a keyword, `ip/bits`, or a host name. */
function addressProblem (address: string): string | undefined {
  if (ADDRESS_KEYWORDS.has(address)) return undefined
  const [ip = '', bits, ...rest] = address.split('/')
  const family = isIP(ip)
  if (family !== 0) {
    const max = family === 4 ? 32 : 128
    if (rest.length === 0 && (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max))) return undefined
    return `invalid address ${JSON.stringify(address.slice(0, 64))}: expected an IP address with a prefix length of at most ${max}`
  }
  if (bits === undefined && address.length <= 253 && HOSTNAME.test(address)) return undefined
  return `invalid address ${JSON.stringify(address.slice(0, 64))}: expected an IP address/prefix, a host name, all, samehost or samenet`
}

/**
 * Why pgmesh refuses a pg_hba line that is a syntactically valid entry (hbaEntryProblem passed), or undefined:
 * no includes or `@file` lists (they read server files), a known method, no trust/ident/peer over the network,
 * and a real address.
 */
export function hbaRuleProblem (line: string): string | undefined {
  const tokens = tokenize(line)
  if (typeof tokens === 'string') return tokens
  const [type = '', database = '', user = ''] = tokens
  if (INCLUDE_TYPES.has(type)) return INCLUDES_REFUSED
  if ([database, user].some(field => field.split(',').some(item => item.startsWith('@')))) {
    return '@file lists are not allowed: they make the server read files of its host'
  }
  let method = tokens[3]
  if (type !== 'local') {
    const address = tokens[3] ?? ''
    const problem = addressProblem(address)
    if (problem !== undefined) return problem
    // `192.168.0.1 255.255.255.0`: an address without a prefix length is followed by its mask.
    const maskFollows = !address.includes('/') && isIP(address) !== 0
    if (maskFollows && isIP(tokens[4] ?? '') === 0) return 'an IP address without a prefix length must be followed by a netmask'
    method = tokens[maskFollows ? 5 : 4]
  }
  if (method === undefined) return 'missing auth method'
  if (!AUTH_METHODS.has(method)) return `unknown auth method ${JSON.stringify(method.slice(0, 64))}`
  if (type !== 'local') return NETWORK_METHODS_REFUSED.get(method)
  return undefined
}

/** Why pgmesh refuses a syntactically valid pg_ident line, or undefined: no includes. */
export function identRuleProblem (line: string): string | undefined {
  const tokens = tokenize(line)
  if (typeof tokens === 'string') return tokens
  return INCLUDE_TYPES.has(tokens[0] ?? '') ? INCLUDES_REFUSED : undefined
}
