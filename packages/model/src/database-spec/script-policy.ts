/**
 * What a `scripts` statement may be (issue 16). Scripts run once, at creation, as the control plane's superuser
 * (as the anchor runs them), so no text check can make them harmless: dynamic SQL (a DO block's EXECUTE, functions
 * that run a query string) can reach anything a superuser can. What is checked is what the anchor checks (each entry
 * one statement, 1–1024 characters, at most 256 entries; the schema has the lengths) plus a refusal of the forms
 * that reach the server's operating system or files directly, so that a spec cannot do that by accident or in one
 * obvious line:
 *
 * - `COPY ... TO/FROM PROGRAM` and `COPY ... TO/FROM '<server file>'` (COPY with STDIN/STDOUT stays allowed);
 * - the server file functions (`pg_read_file`, `pg_read_binary_file`, `pg_ls_dir` and the other `pg_ls_*dir`,
 *   `pg_stat_file`, `lo_import`, `lo_export`, `pg_file_write` and friends of adminpack);
 * - `ALTER SYSTEM` (writes postgresql.auto.conf, which the spec's own settings are checked to keep out of),
 *   `LOAD` and functions in `LANGUAGE c` or `internal` (load a shared library);
 * - extensions and languages that run untrusted code or read files: untrusted procedural languages (`…u`),
 *   `adminpack`, `file_fdw`, and `CREATE LANGUAGE`;
 * - anything naming `pgmesh_repl`, the control plane's schema for DDL replication.
 *
 * The words are searched in the statement with comments removed and string contents kept (a function body is a
 * string), so a string that merely mentions them is refused too; that is the price of a check that cannot be split
 * by a comment.
 */

const MAX_STATEMENT_LENGTH = 1024
/** Where a statement starts: the text's start, after `;`, or at the start of a function body or PL/pgSQL block. */
const START = String.raw`(?:^|[;$']|\bbegin\b|\bthen\b|\belse\b|\bloop\b|\bdo\b)\s*`

const REFUSED: ReadonlyArray<{ pattern: RegExp, message: string }> = [
  { pattern: /\b(?:to|from)\s+program\b/, message: 'COPY ... PROGRAM runs a shell command on the server' },
  { pattern: new RegExp(`${START}copy\\b[^;]*?\\b(?:to|from)\\s+(?:e?'|\\$)`), message: 'COPY to or from a server file is not allowed (use STDIN/STDOUT)' },
  {
    pattern: /\b(?:pg_read_file|pg_read_binary_file|pg_ls_dir|pg_ls_\w*dir|pg_stat_file|lo_import|lo_export|pg_file_\w+|pg_logdir_ls)\s*\(/,
    message: 'server file functions are not allowed'
  },
  { pattern: /\balter\s+system\b/, message: 'ALTER SYSTEM is not allowed: settings come from postgresql_conf' },
  { pattern: new RegExp(`${START}load\\b`), message: 'LOAD is not allowed: it loads a shared library' },
  { pattern: /\blanguage\s+(?:'|")?(?:c|internal)(?:'|")?(?:\s|;|$)/, message: 'functions in LANGUAGE c or internal load a shared library' },
  { pattern: /\bcreate\s+(?:or\s+replace\s+)?(?:trusted\s+)?(?:procedural\s+)?language\b/, message: 'CREATE LANGUAGE is not allowed' },
  {
    pattern: /\bcreate\s+extension\s+(?:if\s+not\s+exists\s+)?"?(?:\w+u|adminpack|file_fdw)"?(?:\s|;|$)/,
    message: 'this extension runs untrusted code or reads server files'
  },
  { pattern: /\bpgmesh_repl\b/, message: 'schema pgmesh_repl belongs to the control plane' }
]

/**
 * The statement with comments replaced by a space, or a problem: more than one statement, or an unterminated
 * quote or comment. Knows `'…'` (with `''` and, in E-strings, `\'`), `"…"`, `$tag$…$tag$`, `--` and nested `/* *\/`.
 */
function stripComments (sql: string): { text: string } | { problem: string } {
  let out = ''
  let i = 0
  let ended = false
  while (i < sql.length) {
    const ch = sql[i] ?? ''
    const rest = sql.slice(i, i + 2)
    if (ended && !/\s/.test(ch) && rest !== '--' && rest !== '/*') return { problem: 'must be a single SQL statement' }
    if (rest === '--') {
      const end = sql.indexOf('\n', i)
      i = end < 0 ? sql.length : end
      out += ' '
    } else if (rest === '/*') {
      let depth = 0
      let j = i
      for (; j < sql.length; j++) {
        if (sql.startsWith('/*', j)) { depth++; j++ } else if (sql.startsWith('*/', j)) { depth--; j++; if (depth === 0) break }
      }
      if (depth !== 0) return { problem: 'unterminated comment' }
      i = j + 1
      out += ' '
    } else if (ch === "'" || ch === '"') {
      const escapes = ch === "'" && /[eE]$/.test(sql.slice(0, i)) && !/\w[eE]$/.test(sql.slice(Math.max(0, i - 2), i))
      let j = i + 1
      for (; j < sql.length; j++) {
        if (escapes && sql[j] === '\\') { j++; continue }
        if (sql[j] === ch) { if (sql[j + 1] === ch) { j++; continue } break }
      }
      if (j >= sql.length) return { problem: 'unterminated quoted string' }
      out += sql.slice(i, j + 1)
      i = j + 1
    } else if (ch === '$' && /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.test(sql.slice(i)) && !/[A-Za-z0-9_]$/.test(sql.slice(0, i))) {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))?.[0] ?? '$$'
      const end = sql.indexOf(tag, i + tag.length)
      if (end < 0) return { problem: 'unterminated dollar-quoted string' }
      out += sql.slice(i, end + tag.length)
      i = end + tag.length
    } else if (ch === ';') {
      ended = true
      i++
    } else {
      out += ch
      i++
    }
  }
  return { text: out }
}

/** Why a scripts entry is refused, or undefined. Never echoes the statement. */
export function scriptStatementProblem (statement: string): string | undefined {
  if (statement.length > MAX_STATEMENT_LENGTH) return undefined // the schema reports the length
  if (statement.includes('\0')) return 'must not contain NUL'
  const stripped = stripComments(statement)
  if ('problem' in stripped) return stripped.problem
  const text = stripped.text.toLowerCase().replace(/\s+/g, ' ')
  if (text.trim() === '') return 'must be a SQL statement'
  for (const { pattern, message } of REFUSED) if (pattern.test(text)) return `${message} (scripts run as the control plane's superuser)`
  return undefined
}
