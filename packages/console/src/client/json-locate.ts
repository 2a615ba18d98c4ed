// Where a field of a JSON text is: the spec editor points the API's validation messages (`nodes[1].host_ids[0]: …`)
// at the text that holds the field. Pure (no DOM), so it is unit-tested in Node.

/** A span of the text: [start, end) offsets and the 1-based line of its start. */
export interface TextSpan { start: number, end: number, line: number }

interface Located { span: TextSpan, keySpan?: TextSpan, children?: Map<string, Located> | Located[] }

/**
 * The span of the value at `path` (the API's syntax: `a.b[2].c`), or of the nearest enclosing value that exists (a
 * missing required field points at the object that lacks it). Object keys that hold dots (`postgresql_conf` keys
 * such as `pg_stat_statements.track`) are matched whole. Undefined when the text is no JSON.
 */
export function locateField (text: string, path: string): (TextSpan & { exact: boolean }) | undefined {
  let root: Located
  try { root = new Parser(text).document() } catch { return undefined }
  const segments = path.split(/\.|(?=\[)/).filter(s => s !== '')
  let at = root
  let i = 0
  while (i < segments.length) {
    const children = at.children
    const segment = segments[i] ?? ''
    const index = /^\[(\d+)\]$/.exec(segment)
    if (Array.isArray(children) && index !== null) {
      const next = children[Number(index[1])]
      if (next === undefined) break
      at = next
      i++
      continue
    }
    if (!(children instanceof Map)) break
    // The longest run of dotted segments that names one key.
    let matched = 0
    for (let j = segments.length; j > i; j--) {
      const key = segments.slice(i, j).join('.')
      if (!key.includes('[') && children.has(key)) { matched = j; break }
    }
    if (matched === 0) break
    at = children.get(segments.slice(i, matched).join('.')) as Located
    i = matched
  }
  return { ...at.span, exact: i === segments.length }
}

/** The 1-based line each offset of `text` is on: what a gutter marks. */
export function lineOf (text: string, offset: number): number {
  let line = 1
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++
  return line
}

class Parser {
  private i = 0
  constructor (private readonly text: string) {}

  document (): Located {
    const value = this.value()
    this.space()
    if (this.i !== this.text.length) throw new Error('trailing text')
    return value
  }

  private value (): Located {
    this.space()
    const start = this.i
    const ch = this.text[this.i]
    let children: Located['children']
    if (ch === '{') children = this.object()
    else if (ch === '[') children = this.array()
    else if (ch === '"') this.string()
    else this.scalar()
    return { span: this.span(start, this.i), ...(children === undefined ? {} : { children }) }
  }

  private object (): Map<string, Located> {
    const out = new Map<string, Located>()
    this.i++
    this.space()
    if (this.text[this.i] === '}') { this.i++; return out }
    for (;;) {
      this.space()
      const keyStart = this.i
      const key = this.string()
      this.space()
      this.expect(':')
      const value = this.value()
      // The key is where a person looks for the field: the span runs from it to the end of the value.
      out.set(key, { ...value, span: this.span(keyStart, value.span.end), keySpan: this.span(keyStart, keyStart + key.length + 2) })
      this.space()
      if (this.text[this.i] === ',') { this.i++; continue }
      this.expect('}')
      return out
    }
  }

  private array (): Located[] {
    const out: Located[] = []
    this.i++
    this.space()
    if (this.text[this.i] === ']') { this.i++; return out }
    for (;;) {
      out.push(this.value())
      this.space()
      if (this.text[this.i] === ',') { this.i++; continue }
      this.expect(']')
      return out
    }
  }

  private string (): string {
    this.expect('"')
    const start = this.i - 1
    while (this.i < this.text.length && this.text[this.i] !== '"') this.i += this.text[this.i] === '\\' ? 2 : 1
    this.expect('"')
    return JSON.parse(this.text.slice(start, this.i)) as string
  }

  private scalar (): void {
    const m = /^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(this.text.slice(this.i, this.i + 64))
    if (m === null) throw new Error(`unexpected character at ${this.i}`)
    this.i += m[0].length
  }

  private space (): void {
    while (this.i < this.text.length && /\s/.test(this.text[this.i] ?? '')) this.i++
  }

  private expect (ch: string): void {
    if (this.text[this.i] !== ch) throw new Error(`expected ${ch} at ${this.i}`)
    this.i++
  }

  private span (start: number, end: number): TextSpan {
    return { start, end, line: lineOf(this.text, start) }
  }
}
