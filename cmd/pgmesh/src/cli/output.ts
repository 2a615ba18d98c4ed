import pc from 'picocolors'
import { stringify } from 'yaml'

export type OutputFormat = 'table' | 'json' | 'yaml'
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'json', 'yaml']

export interface Painter {
  red: (s: string) => string
  green: (s: string) => string
  yellow: (s: string) => string
  dim: (s: string) => string
  bold: (s: string) => string
}

/**
 * Colour on a terminal or with FORCE_COLOR, never with NO_COLOR set (https://no-color.org). Always a boolean:
 * picocolors' `createColors(undefined)` falls back to its own guess, which turns colour on for any `CI` variable.
 */
export function colorEnabled (stream: Pick<NodeJS.WriteStream, 'isTTY'>, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true
  return stream.isTTY === true && env.TERM !== 'dumb'
}

export function painter (enabled: boolean): Painter {
  const c = pc.createColors(enabled)
  return { red: c.red, green: c.green, yellow: c.yellow, dim: c.dim, bold: c.bold }
}

/** Colours a state by how good it is: the word stays the same, so piped output is unchanged. */
export function paintState (state: string, paint: Painter): string {
  if (['healthy', 'available', 'completed', 'replicating', 'primary'].includes(state)) return paint.green(state)
  if (['failed', 'unreachable', 'down', 'canceled', 'error'].includes(state)) return paint.red(state)
  if (['degraded', 'unknown', 'stopped', 'canceling', 'disabled'].includes(state)) return paint.yellow(state)
  return state
}

/** A state as a cell: padded on the plain word, then coloured by it. */
export function stateCell (state: string, paint: Painter): Cell {
  return { text: state, paint: s => paintState(state, paint) + s.slice(state.length) }
}

/** A cell: its text, and how to paint it once padded (padding is computed on the plain text). */
export type Cell = string | { text: string, paint: (s: string) => string }

/**
 * Columns aligned on two spaces, headers in capitals, like `kubectl get` and `patronictl list`: plain text that
 * greps and diffs well, with no box drawing. Colour goes on after padding, so ANSI codes never skew the widths.
 */
export function table (headers: readonly string[], rows: ReadonlyArray<readonly Cell[]>, paint?: Painter): string {
  const text = (c: Cell | undefined): string => c === undefined ? '' : typeof c === 'string' ? c : c.text
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => text(r[i]).length)))
  const line = (cells: readonly Cell[], header = false): string => cells.map((c, i) => {
    const plain = text(c)
    const padded = i === cells.length - 1 ? plain : plain.padEnd(widths[i] ?? 0)
    if (header) return paint?.bold(padded) ?? padded
    return typeof c === 'string' ? padded : c.paint(padded)
  }).join('  ').trimEnd()
  return [line(headers, true), ...rows.map(r => line(r))].join('\n') + '\n'
}

/** `key: value` lines with the keys aligned, for one object. */
export function fields (pairs: ReadonlyArray<readonly [string, string | undefined]>): string {
  const shown = pairs.filter((p): p is readonly [string, string] => p[1] !== undefined && p[1] !== '')
  const width = Math.max(0, ...shown.map(([k]) => k.length + 1))
  return shown.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${v}`).join('\n') + '\n'
}

/** JSON or YAML of what the API answered, for scripts; undefined for the table format. */
export function machine (format: OutputFormat, value: unknown): string | undefined {
  if (format === 'json') return JSON.stringify(value, null, 2) + '\n'
  if (format === 'yaml') return stringify(value, { lineWidth: 0 })
  return undefined
}

/** One value in a cell: `-` when absent. */
export function cell (value: unknown): string {
  if (value === undefined || value === null || value === '') return '-'
  if (typeof value === 'string') return value
  return JSON.stringify(value)
}
