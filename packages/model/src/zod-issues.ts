import type { z } from 'zod'
import type { Issue } from './errors.js'
import { formatPath, segmentsFromZodPath } from './database-spec/paths.js'

/**
 * Turns zod's issues into the anchor's path-prefixed ones: one issue per unknown field, `[key]` for map keys, and
 * plain words for a missing field instead of zod's "expected string, received undefined". `drop` removes leading
 * path segments (the anchor reports spec fields relative to the spec).
 */
export function issuesFromZod (error: z.ZodError, options: { prefix?: ReadonlyArray<string | number>, drop?: string } = {}): Issue[] {
  const issues: Issue[] = []
  for (const issue of error.issues) {
    let raw: PropertyKey[] = [...(options.prefix ?? []), ...issue.path]
    if (options.drop !== undefined && raw[0] === options.drop && raw.length > 1) raw = raw.slice(1)
    const at = (extra: PropertyKey[] = []): string => formatPath(segmentsFromZodPath([...raw, ...extra]))
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) issues.push({ path: at([key]), message: 'unknown field' })
    } else if (issue.code === 'invalid_type' && / received undefined$/.test(issue.message)) {
      issues.push({ path: at(), message: 'missing required field' })
    } else {
      issues.push({ path: at(), message: issue.message })
    }
  }
  return issues
}
