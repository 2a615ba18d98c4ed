import { readFile, stat } from 'node:fs/promises'
import { EMBEDDED_MANIFEST, mergeManifests, parseManifest, type VersionManifest } from '@pgmesh/model'
import type { Logger } from 'pino'

/** How often the operator's manifest file is looked at for changes. */
const CHECK_MS = 10_000

/**
 * This host's version manifest: the embedded one, with the operator's JSON file (`manifest_path`) merged over it.
 * Nothing is fetched from a network (hosts may be air-gapped): to support a new image, an operator edits the file,
 * which is read again within 10 s of changing (no restart, no pgmesh upgrade). A file that is unreadable or invalid
 * at start stops the daemon; later, the last good one stays in use and the problem is logged.
 */
export class ManifestSource {
  private manifest: VersionManifest
  private mtimeMs: number | undefined
  private timer: NodeJS.Timeout | undefined

  private constructor (private readonly path: string | undefined, private readonly log: Logger, loaded: { manifest: VersionManifest, mtimeMs?: number }) {
    this.manifest = loaded.manifest
    this.mtimeMs = loaded.mtimeMs
  }

  static async open (path: string | undefined, log: Logger): Promise<ManifestSource> {
    if (path === undefined) return new ManifestSource(undefined, log, { manifest: EMBEDDED_MANIFEST })
    const loaded = await load(path)
    log.info({ path, images: loaded.manifest.images.postgres.length }, 'version manifest loaded')
    return new ManifestSource(path, log, loaded)
  }

  current (): VersionManifest {
    return this.manifest
  }

  start (): void {
    if (this.path === undefined || this.timer !== undefined) return
    this.timer = setInterval(() => { void this.refresh() }, CHECK_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Reads the file again when its mtime moved. */
  async refresh (): Promise<void> {
    if (this.path === undefined) return
    try {
      if ((await stat(this.path)).mtimeMs === this.mtimeMs) return
      const loaded = await load(this.path)
      this.manifest = loaded.manifest
      this.mtimeMs = loaded.mtimeMs
      this.log.info({ path: this.path, images: loaded.manifest.images.postgres.length }, 'version manifest reloaded')
    } catch (err) {
      this.log.error({ path: this.path, err: (err as Error).message }, 'version manifest not reloaded; the previous one stays in use')
    }
  }
}

async function load (path: string): Promise<{ manifest: VersionManifest, mtimeMs: number }> {
  const { mtimeMs } = await stat(path)
  let raw: unknown
  try {
    raw = JSON.parse(await readFile(path, 'utf8'))
  } catch (err) {
    throw new Error(`version manifest ${path}: ${(err as Error).message}`)
  }
  const parsed = parseManifest(raw)
  if (!parsed.ok) throw new Error(`version manifest ${path}: ${parsed.message}`)
  return { manifest: mergeManifests(EMBEDDED_MANIFEST, parsed.manifest), mtimeMs }
}
