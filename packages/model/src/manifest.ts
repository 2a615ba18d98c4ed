import { z } from 'zod'
import { InvalidInputError, type Issue } from './errors.js'
import { imageRepository } from './database-spec/index.js'

/**
 * The version manifest (the anchor's format, issue 12): which Postgres images a Swarm host may run, with the
 * versions each provides. pgmesh embeds one (EMBEDDED_MANIFEST) and an operator extends it with a JSON file of the
 * same shape (`manifest_path`), merged over it by image; nothing is fetched from a network (hosts may be air-gapped).
 */
export const DEFAULT_IMAGE_REPOSITORY = 'pgmesh/postgres'

export const ManifestImageSchema = z.strictObject({
  postgres_version: z.string().regex(/^\d{2}\.\d{1,2}$/, { message: 'must be major.minor, e.g. 15.20' }),
  /** Spock images only (`5.0.10`); a pglogical image has none. */
  spock_version: z.string().regex(/^\d+(\.\d+){0,2}$/, { message: 'must be a version such as 5 or 5.0.10' }).optional(),
  image: z.string().min(1).max(255),
  stability: z.enum(['stable', 'dev']),
  default: z.boolean().optional()
})

export const VersionManifestSchema = z.object({
  schema_version: z.literal(1),
  // The anchor's manifest also lists service images (postgrest, mcp, rag): accepted, not used.
  images: z.object({ postgres: z.array(ManifestImageSchema).default([]) }).loose()
})

export type ManifestImage = z.infer<typeof ManifestImageSchema>
export interface VersionManifest { schema_version: 1, images: { postgres: ManifestImage[] } }

/**
 * What pgmesh knows without any file: the testbed's two builds of the offline image
 * (scripts/testbed/build-postgres-image.sh), both Debian bookworm's postgresql-15 with pglogical. 15.18 is the
 * final bookworm point release's (12.15, July 2026; bookworm is in LTS, whose updates go to bookworm-security only),
 * 15.20 is bookworm-security's of November 2026, the minor scripts/install-deps.sh installs on a process host. The
 * build refuses a tag whose minor differs from what it installed. pgEdge's Spock images are not listed: which tags
 * exist is for the operator's manifest file to say.
 */
export const EMBEDDED_MANIFEST: VersionManifest = {
  schema_version: 1,
  images: {
    postgres: [
      { postgres_version: '15.18', image: `${DEFAULT_IMAGE_REPOSITORY}:15.18`, stability: 'stable' },
      { postgres_version: '15.20', image: `${DEFAULT_IMAGE_REPOSITORY}:15.20`, stability: 'stable', default: true }
    ]
  }
}

/**
 * The operator's manifest over the embedded one: an entry for an image already listed replaces it, new ones are
 * added; a file that marks a default takes the default over.
 */
export function mergeManifests (base: VersionManifest, extension: VersionManifest): VersionManifest {
  const extensionHasDefault = extension.images.postgres.some(i => i.default === true)
  const byImage = new Map<string, ManifestImage>()
  for (const entry of base.images.postgres) {
    const { default: isDefault, ...rest } = entry
    byImage.set(entry.image, extensionHasDefault || isDefault !== true ? rest : entry)
  }
  for (const entry of extension.images.postgres) byImage.set(entry.image, entry)
  return { schema_version: 1, images: { postgres: [...byImage.values()] } }
}

/** Parses a manifest file's JSON; the error names the field. */
export function parseManifest (raw: unknown): { ok: true, manifest: VersionManifest } | { ok: false, message: string } {
  const parsed = VersionManifestSchema.safeParse(raw)
  if (!parsed.success) {
    return { ok: false, message: parsed.error.issues.map(i => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') }
  }
  return { ok: true, manifest: { schema_version: 1, images: { postgres: parsed.data.images.postgres } } }
}

/** `15.18` → [15, 18]; `5.0.10` → [5, 0, 10]. */
function parts (version: string): number[] {
  return version.split('.').map(Number)
}

/** Negative, zero or positive as `a` is older than, the same as or newer than `b` (numeric, part by part). */
export function compareVersions (a: string, b: string): number {
  const pa = parts(a)
  const pb = parts(b)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

export function majorOf (version: string): number {
  return parts(version)[0] ?? NaN
}

/** The default entry: the one marked default, else the newest stable one. */
export function defaultImage (manifest: VersionManifest): ManifestImage | undefined {
  const images = manifest.images.postgres
  return images.find(i => i.default === true) ??
    images.filter(i => i.stability === 'stable').sort((a, b) => compareVersions(b.postgres_version, a.postgres_version))[0]
}

export function knownPostgresVersions (manifest: VersionManifest): ReadonlySet<string> {
  return new Set(manifest.images.postgres.map(i => i.postgres_version))
}

/** Repositories of the manifest's images: a Swarm host lets a database run these (the operator vouched for them). */
export function manifestRepositories (manifest: VersionManifest): string[] {
  return [...new Set(manifest.images.postgres.map(i => imageRepository(i.image)))]
}

/** What a database runs now, as far as upgrades are concerned. */
export interface CurrentVersion {
  /** The newest `major.minor` the spec names (database level or any node's). */
  postgresVersion: string
  /** The Spock version of the image it runs, when that image is in the manifest and has one. */
  spockVersion?: string
  /** Whether its image replicates with Spock (else pglogical): see usesSpock. */
  spock: boolean
}

/**
 * Whether an image replicates with Spock: the manifest says so with a spock_version; else its name does, the rule the
 * Swarm orchestrator picks the replication extension by.
 */
export function usesSpock (image: string, spockVersion?: string): boolean {
  return spockVersion !== undefined || image.includes('spock')
}

export interface AvailableUpgrade { postgres_version: string, spock_version?: string, image: string }

/** Why `entry` is not an upgrade of `current`, or undefined when it is (the anchor's bucket rules). */
function upgradeProblem (entry: ManifestImage, current: CurrentVersion): string | undefined {
  const image = JSON.stringify(entry.image)
  if (entry.stability !== 'stable') return `image ${image} is not stable (stability ${entry.stability})`
  if (majorOf(entry.postgres_version) !== majorOf(current.postgresVersion)) {
    return `image ${image} provides PostgreSQL ${entry.postgres_version}, another major version than the database's ${current.postgresVersion}`
  }
  if (entry.spock_version !== undefined && current.spockVersion !== undefined && majorOf(entry.spock_version) !== majorOf(current.spockVersion)) {
    return `image ${image} provides Spock ${entry.spock_version}, another major version than the database's ${current.spockVersion}`
  }
  if (usesSpock(entry.image, entry.spock_version) !== current.spock) {
    return `image ${image} ${current.spock ? 'has no Spock, which the database replicates with' : 'replicates with Spock, the database with pglogical'}`
  }
  const newer = compareVersions(entry.postgres_version, current.postgresVersion)
  if (newer < 0 || (newer === 0 && compareVersions(entry.spock_version ?? '0', current.spockVersion ?? '0') <= 0)) {
    return `image ${image} provides PostgreSQL ${entry.postgres_version}${entry.spock_version === undefined ? '' : ` with Spock ${entry.spock_version}`}, which is not newer than the database's ${current.postgresVersion}${current.spockVersion === undefined ? '' : ` with Spock ${current.spockVersion}`}`
  }
  return undefined
}

/** Stable images of the same major (and Spock major) that are newer than what the database runs, oldest first. */
export function availableUpgrades (manifest: VersionManifest, current: CurrentVersion): AvailableUpgrade[] {
  return manifest.images.postgres
    .filter(entry => upgradeProblem(entry, current) === undefined)
    .sort((a, b) => compareVersions(a.postgres_version, b.postgres_version) || compareVersions(a.spock_version ?? '0', b.spock_version ?? '0'))
    .map(entry => ({ postgres_version: entry.postgres_version, ...(entry.spock_version === undefined ? {} : { spock_version: entry.spock_version }), image: entry.image }))
}

/** The manifest entry `image` names when it is an upgrade of `current`; else the anchor's 400 `upgrade not available: …`. */
export function checkUpgrade (manifest: VersionManifest, current: CurrentVersion, image: string): ManifestImage {
  const entry = manifest.images.postgres.find(i => i.image === image)
  if (entry === undefined) throw upgradeNotAvailable(`image ${JSON.stringify(image.slice(0, 255))} is not in the version manifest`)
  const problem = upgradeProblem(entry, current)
  if (problem !== undefined) throw upgradeNotAvailable(problem)
  return entry
}

export function upgradeNotAvailable (reason: string): InstanceType<typeof InvalidInputError> {
  return new InvalidInputError(`upgrade not available: ${reason}`)
}

/**
 * Swarm: a `postgres_version` an update sets (database level or a node's) must be one the manifest lists, since
 * the version picks what the instance runs. Versions the update leaves as they were are not checked again.
 */
export function unknownVersionIssues (
  manifest: VersionManifest,
  spec: { postgres_version?: string | undefined, nodes: ReadonlyArray<{ name: string, postgres_version?: string | undefined }> },
  previous: { postgres_version?: string | undefined, nodes: ReadonlyArray<{ name: string, postgres_version?: string | undefined }> } | undefined
): Issue[] {
  const known = knownPostgresVersions(manifest)
  const message = (v: string): string => `postgres version ${v} is not in the version manifest (known: ${[...known].sort(compareVersions).join(', ') || 'none'})`
  const issues: Issue[] = []
  if (spec.postgres_version !== undefined && spec.postgres_version !== previous?.postgres_version && !known.has(spec.postgres_version)) {
    issues.push({ path: 'postgres_version', message: message(spec.postgres_version) })
  }
  const before = new Map((previous?.nodes ?? []).map(n => [n.name, n.postgres_version]))
  spec.nodes.forEach((node, i) => {
    const v = node.postgres_version
    if (v !== undefined && v !== before.get(node.name) && !known.has(v)) issues.push({ path: `nodes[${i}].postgres_version`, message: message(v) })
  })
  return issues
}
