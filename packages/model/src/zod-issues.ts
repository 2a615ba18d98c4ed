import type { z } from 'zod'
import { type Issue, joinPath } from './errors.js'

/**
 * Turns zod's issues into the anchor's path-prefixed ones: one issue per unknown field, and plain words for a missing
 * field instead of zod's "expected string, received undefined".
 */
export function issuesFromZod (error: z.ZodError, prefix: ReadonlyArray<string | number> = []): Issue[] {
  const issues: Issue[] = []
  for (const issue of error.issues) {
    const path = [...prefix, ...issue.path.map(p => typeof p === 'symbol' ? String(p) : p)]
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) issues.push({ path: joinPath([...path, key]), message: 'unknown field' })
    } else if (issue.code === 'invalid_type' && / received undefined$/.test(issue.message)) {
      issues.push({ path: joinPath(path), message: 'missing required field' })
    } else {
      issues.push({ path: joinPath(path), message: issue.message })
    }
  }
  return issues
}
