/**
 * Spec validation: schema problems (shape, limits, patterns) and the anchor's cross-field rules, all collected as
 * path-prefixed issues in one pass, so a client sees every problem in one 400 (formatIssues renders them
 * newline-joined, `nodes[0].host_ids[1]: host IDs must be unique within a node`).
 *
 * Messages are the anchor's (server/internal/api/apiv1/validate.go, database/service.go, postgres/roles.go) wherever
 * it has one; schema-level messages are pgmesh's own, since the anchor reports those in Goa's different error body.
 */
import { z } from '@hono/zod-openapi'
import type { Issue } from '../errors.js'
import { issueAt, segmentsFromZodPath } from './paths.js'
import { semanticIssues, type ValidationContext } from './rules.js'
import {
  CreateDatabaseRequestSchema, DatabaseSpecSchema, UpdateDatabaseRequestSchema,
  type CreateDatabaseRequest, type DatabaseSpec, type StoredSpec, type UpdateDatabaseRequest
} from './schemas.js'

export type { ValidationContext } from './rules.js'
export { restoreConfigIssues } from './rules.js'

export type SpecValidation = { ok: true, spec: DatabaseSpec } | { ok: false, issues: Issue[] }
export type RequestValidation<R> = { ok: true, request: R, spec: DatabaseSpec } | { ok: false, issues: Issue[] }

/** Validates a DatabaseSpec body. Issue paths are relative to the spec (`nodes[0].name`). */
export function validateSpec (input: unknown, ctx: ValidationContext = {}): SpecValidation {
  if (!isPlainObject(input)) return { ok: false, issues: [{ path: '', message: 'spec must be a JSON object' }] }
  const { result, soundSpec } = parseCapturingSpec(SpecProbe, input)
  const issues = result.success ? [] : schemaIssues(result.error.issues, false)
  if (soundSpec !== undefined) issues.push(...semanticIssues(soundSpec, ctx, ctx.databaseId))
  if (!result.success || issues.length > 0) return { ok: false, issues: dedupe(issues) }
  return { ok: true, spec: result.data }
}

/** Validates a create-database body. Paths: `id`, `tenant_id`, and spec fields without a `spec.` prefix, as the anchor. */
export function validateCreateRequest (input: unknown, ctx: Omit<ValidationContext, 'previous'> = {}): RequestValidation<CreateDatabaseRequest> {
  if (!isPlainObject(input)) return { ok: false, issues: [{ path: '', message: 'request body must be a JSON object' }] }
  const { result, soundSpec } = parseCapturingSpec(CreateRequestProbe, input)
  const issues = result.success ? [] : schemaIssues(result.error.issues, true)
  const bodyId = typeof input.id === 'string' ? input.id : undefined
  if (soundSpec !== undefined) issues.push(...semanticIssues(soundSpec, ctx, bodyId ?? ctx.databaseId))
  if (!result.success || issues.length > 0) return { ok: false, issues: dedupe(issues) }
  return { ok: true, request: result.data, spec: result.data.spec }
}

/** What validateUpdateRequest needs to know about the stored database. */
export interface UpdateValidationContext extends ValidationContext {
  previous: StoredSpec
  databaseId: string
  /** The stored tenant; undefined when the database has none (then an update may not add one). */
  previousTenantId?: string | undefined
}

/**
 * Validates an update-database body against the stored database: everything validateCreateRequest checks, plus
 * `tenant ID cannot be changed` and the update rules of validateSpec.
 */
export function validateUpdateRequest (input: unknown, ctx: UpdateValidationContext): RequestValidation<UpdateDatabaseRequest> {
  if (!isPlainObject(input)) return { ok: false, issues: [{ path: '', message: 'request body must be a JSON object' }] }
  const { result, soundSpec } = parseCapturingSpec(UpdateRequestProbe, input)
  const issues = result.success ? [] : schemaIssues(result.error.issues, true)
  const tenantId = input.tenant_id
  if ((tenantId === undefined || typeof tenantId === 'string') && tenantId !== ctx.previousTenantId) {
    issues.push({ path: 'tenant_id', message: 'tenant ID cannot be changed' })
  }
  if (soundSpec !== undefined) issues.push(...semanticIssues(soundSpec, ctx, ctx.databaseId))
  if (!result.success || issues.length > 0) return { ok: false, issues: dedupe(issues) }
  return { ok: true, request: result.data, spec: result.data.spec }
}

// --- Schema phase ------------------------------------------------------------------------------------------------

/*
 * Cross-field rules can only look at a spec whose shape is right. zod decides that for us: it runs a schema's checks
 * only when nothing inside it failed in a way that makes the value untrustworthy (wrong type, missing field, value
 * outside an enum, oversized array whose elements went unchecked), while "continuable" problems (too long, pattern
 * mismatch, bad identifier) still let checks run. So a check on the spec schema that captures the parsed value tells
 * us exactly when the semantic rules may run, also when a sibling such as the request's `id` failed. Parsing is
 * synchronous, so a module-level slot cannot be seen by another parse.
 */
let capturingSpec = false
let capturedSpec: DatabaseSpec | undefined
const SpecProbe = DatabaseSpecSchema.check(payload => {
  if (capturingSpec) capturedSpec = payload.value
})
const CreateRequestProbe = z.strictObject({ ...CreateDatabaseRequestSchema.shape, spec: SpecProbe })
const UpdateRequestProbe = z.strictObject({ ...UpdateDatabaseRequestSchema.shape, spec: SpecProbe })

function parseCapturingSpec<S extends z.ZodType> (schema: S, input: unknown): { result: z.ZodSafeParseResult<z.output<S>>, soundSpec: DatabaseSpec | undefined } {
  capturingSpec = true
  capturedSpec = undefined
  try {
    const result = schema.safeParse(input, { error: schemaMessage })
    return { result, soundSpec: capturedSpec }
  } finally {
    capturingSpec = false
    capturedSpec = undefined
  }
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean',
  array: 'an array',
  object: 'an object',
  record: 'an object'
}

/**
 * pgmesh's wording for zod's generic problems; schemas with their own message (identifiers, enums) keep theirs. The
 * API installs it for its route validation too (`z.config({ customError })`), so a request gets the same words there.
 */
export const schemaMessage: z.core.$ZodErrorMap = issue => {
  if (issue.input === undefined && (issue.code === 'invalid_type' || issue.code === 'invalid_value')) return 'missing required field'
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}`
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${String(issue.maximum)} characters long`
      if (issue.origin === 'array') return `must have at most ${String(issue.maximum)} items`
      return `must be at most ${String(issue.maximum)}`
    case 'too_small':
      if (issue.origin === 'string') return Number(issue.minimum) === 1 ? 'must not be empty' : `must be at least ${String(issue.minimum)} characters long`
      if (issue.origin === 'array') return `must have at least ${String(issue.minimum)} item${Number(issue.minimum) === 1 ? '' : 's'}`
      return `must be at least ${String(issue.minimum)}`
    case 'invalid_format':
      return issue.format === 'regex' && issue.pattern !== undefined ? `must match the pattern ${issue.pattern.replace(/^\/(.*)\/[a-z]*$/, '$1')}` : undefined
    case 'invalid_value':
      return `must be one of: ${issue.values.map(String).join(', ')}`
    case 'unrecognized_keys':
      return 'unknown field'
    default:
      return undefined
  }
}

/** zod issues as Issues; an unknown-fields issue becomes one issue per field. `insideRequest` drops the `spec.` prefix. */
function schemaIssues (zodIssues: readonly z.core.$ZodIssue[], insideRequest: boolean): Issue[] {
  const issues: Issue[] = []
  for (const zodIssue of zodIssues) {
    let segments = segmentsFromZodPath(zodIssue.path)
    // The anchor names spec fields from the spec down (`nodes[0]`), and request fields by name (`id`).
    if (insideRequest && segments[0] === 'spec' && segments.length > 1) segments = segments.slice(1)
    if (zodIssue.code === 'unrecognized_keys') {
      for (const key of zodIssue.keys) issues.push(issueAt([...segments, key], 'unknown field'))
    } else {
      issues.push(issueAt(segments, zodIssue.message))
    }
  }
  return issues
}

// --- Semantic phase ----------------------------------------------------------------------------------------------

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The same rule can be reached twice (create-time and update-time source checks); report it once. */
function dedupe (issues: readonly Issue[]): Issue[] {
  const seen = new Set<string>()
  return issues.filter(issue => {
    const key = `${issue.path}\n${issue.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}
