// Finding 3 of issue 16: a password written and then replaced must not be readable anywhere a member or a client can
// look: the document (saved, every change of its history, the join document), its files on disk, or any response.
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { parseRecords } from '@pgmesh/state'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, startApiFixture } from './api.fixture.js'

const FIRST = 'first-password-9Qx7'
const SECOND = 'second-password-Lm3v'
const S3_SECRET = 's3-secret-key-Zt8w'
const API_KEY = 'sk-llm-key-Hq2r'
const PLAINTEXTS = [FIRST, SECOND, S3_SECRET, API_KEY]

const logLines: string[] = []
const logger = pino({ level: 'debug' }, { write: (line: string) => { logLines.push(line) } })
let api: ApiFixture
const responses: string[] = []
const call = async (method: string, path: string, body?: unknown): ReturnType<ApiFixture['call']> => {
  const res = await api.call(method, path, body)
  responses.push(res.text)
  return res
}

const spec = (password: string): Record<string, unknown> => ({
  database_name: 'vault',
  database_users: [{ username: 'app', password, db_owner: true, attributes: ['LOGIN'] }],
  nodes: [{ name: 'n1', host_ids: ['host-1'] }],
  backup_config: { repositories: [{ type: 's3', s3_bucket: 'backups', s3_region: 'eu-west-1', s3_key: 'AKIAEXAMPLE', s3_key_secret: S3_SECRET }] },
  services: [{ service_id: 'mcp', service_type: 'mcp', version: '1.0.0', host_ids: ['host-1'], connect_as: 'app', config: { llm_provider: 'anthropic', anthropic_api_key: API_KEY } }]
})

/**
 * The document as it was after each change of its history, as JSON: what a member (or anyone with the join document
 * or the state files) can read at any version. Strings are text objects, one op per character, so the changes' ops
 * themselves never show a value whole.
 */
function decodedHistory (doc: A.Doc<unknown>): string {
  return A.getAllChanges(doc).map(c => JSON.stringify(A.view(doc, [A.decodeChange(c).hash]))).join('\n')
}

function expectNoPlaintext (where: string, text: string): void {
  for (const secret of PLAINTEXTS) expect(text.includes(secret), `${secret} in ${where}`).toBe(false)
}

beforeAll(async () => {
  api = await startApiFixture({ logger, clusterId: 'c1' })
})

afterAll(async () => {
  await api.stop()
})

describe('secrets in the replicated document', () => {
  let versions: string[] = []

  it('writes a password, replaces it, and neither value is anywhere in the document, its files or the responses', async () => {
    expect((await call('POST', '/v1/databases', { id: 'vault', spec: spec(FIRST) })).status).toBe(200)
    const update = await call('POST', '/v1/databases/vault', { spec: spec(SECOND) })
    expect(update.status).toBe(200)
    // The reconciler still gets the current values, decrypted.
    const desired = api.host.document.databases.desired().find(d => d.id === 'vault')
    expect(desired?.spec?.database_users?.[0]?.password).toBe(SECOND)
    expect((desired?.spec?.backup_config?.repositories[0] as { s3_key_secret?: string } | undefined)?.s3_key_secret).toBe(S3_SECRET)

    const doc = api.host.state.automergeDoc
    const saved = A.save(doc)
    expectNoPlaintext('A.save(doc)', Buffer.from(saved).toString('latin1'))
    expectNoPlaintext('the decoded history', decodedHistory(doc))
    const { token } = await api.host.membership.joinToken()
    const joinDocument = api.host.membership.joinDocument(token)
    expectNoPlaintext('the join document', Buffer.from(joinDocument).toString('latin1'))
    expectNoPlaintext('the join document\'s history', decodedHistory(A.load(joinDocument)))
    // The history does hold the sealed values (it is where the probe found them in plain text).
    expect(decodedHistory(doc)).toContain('pgmesh:enc:v1:')

    await api.host.state.flush()
    const stateDir = join(api.dir, 'state')
    for (const file of await readdir(stateDir)) {
      const raw = await readFile(join(stateDir, file))
      expectNoPlaintext(file, raw.toString('latin1'))
      let replay = A.init<unknown>()
      for (const record of parseRecords(raw).records) replay = A.loadIncremental(replay, record)
      expectNoPlaintext(`${file}, decoded`, decodedHistory(replay))
    }

    const history = await call('GET', '/v1/databases/vault/history')
    versions = (history.json.changes as Array<{ version: string }>).map(c => c.version)
    await call('GET', '/v1/databases/vault')
    await call('GET', '/v1/databases')
    await call('GET', `/v1/databases/vault/history?from=${versions[0] ?? ''}`)
    await call('GET', '/v1/databases/vault/tasks')
    for (const task of (await call('GET', '/v1/tasks')).json.tasks as Array<{ task_id: string }>) {
      await call('GET', `/v1/databases/vault/tasks/${task.task_id}`)
      await call('GET', `/v1/databases/vault/tasks/${task.task_id}/log`)
    }
    for (const [i, text] of responses.entries()) expectNoPlaintext(`response ${i}`, text)
    expectNoPlaintext('the logs', logLines.join('\n'))
  })

  it('says in a diff that a password changed, without either value', async () => {
    const diff = await call('GET', `/v1/databases/vault/history?from=${versions[0] ?? ''}`)
    const entry = (diff.json.diff as Array<{ path: string, before?: string, after?: string }>).find(e => e.path === 'spec.database_users[0].password')
    expect(entry?.before).toMatch(/^\(secret [0-9a-f]{8}\)$/)
    expect(entry?.after).toMatch(/^\(secret [0-9a-f]{8}\)$/)
    expect(entry?.before).not.toBe(entry?.after)
    expectNoPlaintext('the diff', diff.text)
    expect(diff.text).not.toContain('pgmesh:enc')
  })

  it('writes nothing for a secret rewritten unchanged (a GET → POST round trip, or the same password again)', async () => {
    const heads = api.host.state.heads()
    const before = JSON.stringify(api.host.state.doc.databases?.vault?.spec)
    expect((await call('POST', '/v1/databases/vault', { spec: spec(SECOND) })).status).toBe(200)
    expect(JSON.stringify(api.host.state.doc.databases?.vault?.spec)).toBe(before)
    const touched = A.getChanges(A.view(api.host.state.automergeDoc, heads), api.host.state.automergeDoc).map(c => JSON.stringify(A.decodeChange(c)))
    expect(touched.join('\n')).not.toContain('pgmesh:enc')
  })

  it('drops a deleted database\'s secrets from the current document', async () => {
    expect((await call('DELETE', '/v1/databases/vault')).status).toBe(200)
    const current = JSON.stringify(api.host.state.doc.databases?.vault)
    expect(current).not.toContain('pgmesh:enc')
    expect(current).toContain('"username":"app"')
  })

  it('keeps the data dir\'s state files 0600 in 0700 directories', async () => {
    const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777
    expect(await modeOf(join(api.dir, 'state'))).toBe(0o700)
    for (const file of await readdir(join(api.dir, 'state'))) expect(await modeOf(join(api.dir, 'state', file)), file).toBe(0o600)
    expect(await modeOf(join(api.dir, 'tasks'))).toBe(0o700)
    for (const file of await readdir(join(api.dir, 'tasks'))) expect(await modeOf(join(api.dir, 'tasks', file)), file).toBe(0o600)
    for (const file of ['cluster.key', 'data.key', 'peer.key']) expect(await modeOf(join(api.dir, file)), file).toBe(0o600)
    expect((await modeOf(api.dir)) & 0o066).toBe(0)
  })
})
