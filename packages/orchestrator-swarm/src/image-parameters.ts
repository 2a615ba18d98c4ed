import { cachedAsync, describedParameters } from '@pgmesh/orchestrator'
import type Docker from 'dockerode'
import type { Logger } from 'pino'
import { describeConfigContainerName, describeConfigContainerSpec } from './task-spec.js'

/**
 * A non-TTY container's logs as the Engine sends them: frames of an 8-byte header (stream type: 1 stdout, 2 stderr;
 * three zero bytes; the payload's length, big-endian) and the payload.
 */
export function demuxLogs (logs: Buffer): { stdout: string, stderr: string } {
  const out: Record<1 | 2, Buffer[]> = { 1: [], 2: [] }
  let offset = 0
  while (offset + 8 <= logs.length) {
    const stream = logs[offset]
    const length = logs.readUInt32BE(offset + 4)
    const payload = logs.subarray(offset + 8, offset + 8 + length)
    if (stream === 1 || stream === 2) out[stream].push(payload)
    offset += 8 + length
  }
  return { stdout: Buffer.concat(out[1]).toString('utf8'), stderr: Buffer.concat(out[2]).toString('utf8') }
}

function isNotFound (err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404
}

/**
 * The configuration parameters the server in a Postgres image knows, so that settings only some minor versions have
 * (`output_plugin_libraries`, 15.19+) are written only for servers that accept them: an unknown name stops the
 * server. Learnt once per image content id and major from `postgres --describe-config` in a one-shot container
 * (a re-tagged or rebuilt image has a new id, so it is asked again); a failed attempt is not cached.
 */
export class ImageParameters {
  private readonly describeOnce = cachedAsync(
    async (image: { name: string, id: string, postgresMajor: number }) => await this.describe(image.name, image.id, image.postgresMajor),
    image => `${image.id} ${image.postgresMajor}`)

  constructor (private readonly docker: Docker, private readonly hostId: string, private readonly log: Logger) {}

  async of (image: string, postgresMajor: number): Promise<ReadonlySet<string>> {
    return await this.describeOnce({ name: image, id: await this.localImageId(image), postgresMajor })
  }

  /** The image's id on this host, pulled first when the host does not have it (Swarm would pull it for a service). */
  private async localImageId (image: string): Promise<string> {
    const inspect = async (): Promise<string> => (await this.docker.getImage(image).inspect()).Id
    try {
      return await inspect()
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
    this.log.info({ image }, 'pulling image')
    const stream = await this.docker.pull(image) as NodeJS.ReadableStream
    const progress = await new Promise<Array<{ error?: string }>>((resolve, reject) => {
      (this.docker.modem as { followProgress: (s: NodeJS.ReadableStream, done: (err: Error | null, out: Array<{ error?: string }>) => void) => void })
        .followProgress(stream, (err, out) => { if (err === null) resolve(out); else reject(err) })
    })
    const failure = progress.find(p => p.error !== undefined)?.error
    if (failure !== undefined) throw new Error(`image ${image} is not on this host and could not be pulled: ${failure}`)
    return await inspect()
  }

  private async describe (image: string, imageId: string, postgresMajor: number): Promise<ReadonlySet<string>> {
    const started = Date.now()
    // A leftover of an interrupted run has the same name.
    await this.docker.getContainer(describeConfigContainerName(imageId, postgresMajor)).remove({ force: true }).catch((err: unknown) => { if (!isNotFound(err)) throw err })
    const container = await this.docker.createContainer(describeConfigContainerSpec({ hostId: this.hostId, image, imageId, postgresMajor }))
    try {
      await container.start()
      const { StatusCode: code } = await container.wait() as { StatusCode: number }
      const { stdout, stderr } = demuxLogs(await container.logs({ stdout: true, stderr: true, follow: false }))
      if (code !== 0) throw new Error(`postgres --describe-config in ${image} failed (exit ${code}): ${stderr.trim().slice(-2000)}`)
      const parameters = describedParameters(stdout)
      // Every server has `port`: without it the output was not what was asked for, and guessing would drop settings.
      if (!parameters.has('port')) throw new Error(`postgres --describe-config in ${image} listed no parameters: ${(stdout + stderr).trim().slice(0, 500)}`)
      this.log.info({ image, imageId, postgresMajor, parameters: parameters.size, ms: Date.now() - started }, 'server parameters of the image')
      return parameters
    } finally {
      await container.remove({ force: true }).catch(() => undefined)
    }
  }
}
