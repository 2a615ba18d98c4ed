import { readFile } from 'node:fs/promises'
import type { CreateDatabaseBody, UpdateDatabaseBody } from '@pgmesh/client'
import { parseDocument } from 'yaml'
import { UsageError } from './errors.js'

/**
 * A spec document as JSON or YAML (YAML 1.2 reads JSON too, but JSON's own parser gives JSON's error positions).
 * `name` is what error messages call it.
 */
export function parseSpecText (text: string, name: string): unknown {
  if (/^\s*[{[]/.test(text) && !/\.ya?ml$/.test(name)) {
    try { return JSON.parse(text) } catch (err) { throw new UsageError(`${name}: not valid JSON: ${(err as Error).message}`) }
  }
  const doc = parseDocument(text, { prettyErrors: true })
  if (doc.errors.length > 0) throw new UsageError(`${name}: not valid YAML:\n${doc.errors.map(e => `  ${e.message.split('\n')[0] ?? ''}`).join('\n')}`)
  return doc.toJS() as unknown
}

/** Reads a spec file, or standard input for `-`. */
export async function readSpecFile (path: string): Promise<object> {
  let text: string
  try {
    text = path === '-' ? await readStdin() : await readFile(path, 'utf8')
  } catch (err) {
    throw new UsageError(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
  }
  const value = parseSpecText(text, path === '-' ? 'standard input' : path)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError(`${path}: must hold an object (a spec, or {id, spec})`)
  return value
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** A file with a `spec` key is a request body; anything else is a bare spec. */
function isBody (value: object): value is { spec: unknown, id?: unknown, tenant_id?: unknown } {
  return 'spec' in value
}

/** The create body from a file: `{id?, tenant_id?, spec}` as it is, or a bare spec; `--id` sets or must match the id. */
export function createBody (file: object, id: string | undefined): CreateDatabaseBody {
  if (!isBody(file)) return { ...(id === undefined ? {} : { id }), spec: file }
  if (id !== undefined && file.id !== undefined && file.id !== id) throw new UsageError(`--id ${id} differs from the file's id ${String(file.id)}`)
  return { ...file, ...(id === undefined ? {} : { id }) } as CreateDatabaseBody
}

/** The update body: `{tenant_id?, spec}` (an `id` in the file must be the database's), or a bare spec. */
export function updateBody (file: object, id: string): UpdateDatabaseBody {
  if (!isBody(file)) return { spec: file }
  const { id: fileId, ...rest } = file
  if (fileId !== undefined && fileId !== id) throw new UsageError(`the file is for database ${String(fileId)}, not ${id}`)
  return rest as UpdateDatabaseBody
}
