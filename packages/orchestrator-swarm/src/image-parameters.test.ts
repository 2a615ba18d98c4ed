import { Readable } from 'node:stream'
import Docker from 'dockerode'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { demuxLogs, ImageParameters } from './image-parameters.js'

function frame (stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text, 'utf8')
  const header = Buffer.alloc(8)
  header[0] = stream
  header.writeUInt32BE(payload.length, 4)
  return Buffer.concat([header, payload])
}

const DESCRIBED = 'port\tpostmaster\tConnections\tINTEGER\t5432\t1\t65535\tSets the TCP port.\t\n' +
  'output_plugin_libraries\tsuperuser\tReplication / Sending Servers\tSTRING\tpgoutput, test_decoding\t\t\tLists libraries.\t\n'

interface Run { image: string, env: string[] | undefined }

/** Just enough of the Engine API: images by name (id, or absent), and one-shot containers that print `output`. */
function fakeDocker (options: {
  images: Map<string, string>
  output: (run: Run) => { code: number, logs: Buffer }
  pullError?: string
}): { docker: Docker, runs: Run[], removed: string[] } {
  const runs: Run[] = []
  const removed: string[] = []
  const notFound = Object.assign(new Error('no such image'), { statusCode: 404 })
  const docker = {
    // A real client's modem (never connected): followProgress only reads the pull stream.
    modem: new Docker({ socketPath: '/nonexistent' }).modem,
    getImage: (name: string) => ({
      inspect: async () => {
        const id = options.images.get(name)
        if (id === undefined) throw notFound
        return { Id: id }
      }
    }),
    pull: async (name: string) => {
      if (options.pullError === undefined) options.images.set(name, 'sha256:pulled')
      return Readable.from([JSON.stringify(options.pullError === undefined ? { status: 'done' } : { error: options.pullError }) + '\n'])
    },
    getContainer: (name: string) => ({ remove: async () => { removed.push(name); throw Object.assign(new Error('gone'), { statusCode: 404 }) } }),
    createContainer: async (spec: Docker.ContainerCreateOptions) => {
      const run = { image: spec.Image ?? '', env: spec.Env }
      runs.push(run)
      const { code, logs } = options.output(run)
      return {
        start: async () => {},
        wait: async () => ({ StatusCode: code }),
        logs: async () => logs,
        remove: async () => { removed.push(spec.name ?? '') }
      }
    }
  }
  return { docker: docker as unknown as Docker, runs, removed }
}

const logger = pino({ level: 'silent' })

describe('demuxLogs', () => {
  it("splits Docker's multiplexed log frames into stdout and stderr, joining split lines", () => {
    const logs = Buffer.concat([frame(1, 'port\tpost'), frame(2, 'warning\n'), frame(1, 'master\n'), frame(1, 'work_mem\tuser\n')])
    expect(demuxLogs(logs)).toEqual({ stdout: 'port\tpostmaster\nwork_mem\tuser\n', stderr: 'warning\n' })
  })

  it('ignores a truncated trailing header', () => {
    expect(demuxLogs(Buffer.concat([frame(1, 'a\n'), Buffer.from([1, 0, 0])]))).toEqual({ stdout: 'a\n', stderr: '' })
  })
})

describe('ImageParameters', () => {
  it('asks each image id and major once, also when asked concurrently, and again for a rebuilt image under the same tag', async () => {
    const images = new Map([['pgmesh/postgres:15', 'sha256:aaaaaaaaaaaaaaaa']])
    const { docker, runs, removed } = fakeDocker({ images, output: () => ({ code: 0, logs: frame(1, DESCRIBED) }) })
    const parameters = new ImageParameters(docker, 'host-1', logger)
    const [first, second] = await Promise.all([parameters.of('pgmesh/postgres:15', 15), parameters.of('pgmesh/postgres:15', 15)])
    expect([...(first ?? [])]).toEqual(['port', 'output_plugin_libraries'])
    expect(second).toBe(first)
    expect(runs).toEqual([{ image: 'pgmesh/postgres:15', env: ['PGMESH_MAJOR=15'] }])
    // The leftover of an earlier run is removed first, and the container afterwards.
    expect(removed).toEqual(['pgmesh-describe-config-aaaaaaaaaaaa-15', 'pgmesh-describe-config-aaaaaaaaaaaa-15'])

    await parameters.of('pgmesh/postgres:15', 16)
    expect(runs.at(-1)?.env).toEqual(['PGMESH_MAJOR=16'])
    images.set('pgmesh/postgres:15', 'sha256:bbbbbbbbbbbbbbbb')
    await parameters.of('pgmesh/postgres:15', 15)
    expect(runs).toHaveLength(3)
  })

  it('reports a failed run with its stderr and does not cache the failure', async () => {
    let attempts = 0
    const { docker, runs } = fakeDocker({
      images: new Map([['img', 'sha256:cccc']]),
      output: () => ++attempts === 1 ? { code: 127, logs: frame(2, 'sh: 1: exec: postgres: not found\n') } : { code: 0, logs: frame(1, DESCRIBED) }
    })
    const parameters = new ImageParameters(docker, 'host-1', logger)
    await expect(parameters.of('img', 15)).rejects.toThrow('postgres --describe-config in img failed (exit 127): sh: 1: exec: postgres: not found')
    expect((await parameters.of('img', 15)).has('output_plugin_libraries')).toBe(true)
    expect(runs).toHaveLength(2)
  })

  it('refuses output that lists no parameters rather than leaving settings out', async () => {
    const { docker } = fakeDocker({ images: new Map([['img', 'sha256:dddd']]), output: () => ({ code: 0, logs: frame(1, 'usage: postgres\n') }) })
    await expect(new ImageParameters(docker, 'host-1', logger).of('img', 15)).rejects.toThrow('listed no parameters: usage: postgres')
  })

  it('pulls an image the host does not have, and says so when the pull fails', async () => {
    const pulled = fakeDocker({ images: new Map(), output: () => ({ code: 0, logs: frame(1, DESCRIBED) }) })
    expect((await new ImageParameters(pulled.docker, 'host-1', logger).of('registry.example/pg:15', 15)).has('port')).toBe(true)
    expect(pulled.removed[0]).toBe('pgmesh-describe-config-pulled-15')

    const offline = fakeDocker({ images: new Map(), output: () => ({ code: 0, logs: frame(1, DESCRIBED) }), pullError: 'no route to registry.example' })
    await expect(new ImageParameters(offline.docker, 'host-1', logger).of('registry.example/pg:15', 15))
      .rejects.toThrow('image registry.example/pg:15 is not on this host and could not be pulled: no route to registry.example')
    expect(offline.runs).toHaveLength(0)
  })
})
