/**
 * Minimal pg_hba.conf / pg_ident.conf line checks, ported from the anchor (server/internal/postgres/hba/parse.go).
 * Like the anchor, they reject only lines that are not recognisable entries at all (unknown connection type, too
 * few fields, unterminated quote); auth methods, addresses and options are left for Postgres to judge on reload.
 */

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
