import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { apiComponents, createApp, openApiDocument } from '@pgmesh/api'
import { Host } from '@pgmesh/host'
import pino from 'pino'

/** The OpenAPI document as JSON text, generated from the same schemas that validate requests. */
export async function renderOpenApi (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgmesh-openapi-'))
  try {
    const logger = pino({ level: 'silent' })
    const host = await Host.open({
      hostId: 'openapi', dataDir: dir, apiUrl: 'http://127.0.0.1:3000', listen: [], announce: [], bootstrap: [], orchestrator: 'process', clientAddresses: []
    }, logger)
    const doc = openApiDocument(createApp(apiComponents(host), { logger }))
    await host.stop()
    return JSON.stringify(doc, null, 2) + '\n'
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export async function printOpenApi (): Promise<void> {
  process.stdout.write(await renderOpenApi())
}
