import { Command } from 'commander'
import { describe, expect, it } from 'vitest'
import { resolveVersion, parseRange } from './databases.js'
import { registerClientCommands } from './index.js'
import { colorEnabled, painter, table } from './output.js'
import { createBody, parseSpecText, updateBody } from './spec-file.js'
import { restoreBody } from './operations.js'

describe('the CLI\'s pure parts', () => {
  it('aligns columns on the plain text and paints after padding', () => {
    const red = painter(true)
    const out = table(['A', 'STATE', 'C'], [['x', { text: 'down', paint: s => red.red(s) }, 'end'], ['longer', 'ok', '']])
    expect(out).toBe('A       STATE  C\nx       \u001b[31mdown \u001b[39m  end\nlonger  ok\n')
  })

  it('colours only a terminal or with FORCE_COLOR, never with NO_COLOR, whatever CI says', () => {
    const pipe = { isTTY: undefined as unknown as boolean }
    expect(colorEnabled(pipe, { CI: 'true' })).toBe(false)
    expect(colorEnabled({ isTTY: true }, {})).toBe(true)
    expect(colorEnabled({ isTTY: true }, { TERM: 'dumb' })).toBe(false)
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: '1' })).toBe(false)
    expect(colorEnabled(pipe, { FORCE_COLOR: '1' })).toBe(true)
    expect(colorEnabled(pipe, { FORCE_COLOR: '0' })).toBe(false)
    expect(painter(colorEnabled(pipe, { CI: 'true' })).red('x')).toBe('x')
  })

  it('reads JSON and YAML specs, and shapes create and update bodies', () => {
    expect(parseSpecText('{"database_name": "a"}', 'a.json')).toEqual({ database_name: 'a' })
    expect(parseSpecText('database_name: a\nnodes: [{name: n1, host_ids: [h]}]\n', 'a.yaml')).toEqual({ database_name: 'a', nodes: [{ name: 'n1', host_ids: ['h'] }] })
    expect(() => parseSpecText('{"a": ', 'a.json')).toThrow(/a\.json: not valid JSON/)
    expect(createBody({ database_name: 'a' }, 'a')).toEqual({ id: 'a', spec: { database_name: 'a' } })
    expect(createBody({ id: 'a', spec: {} }, undefined)).toEqual({ id: 'a', spec: {} })
    expect(() => createBody({ id: 'a', spec: {} }, 'b')).toThrow('--id b differs from the file\'s id a')
    expect(updateBody({ id: 'a', tenant_id: 't', spec: {} }, 'a')).toEqual({ tenant_id: 't', spec: {} })
    expect(() => updateBody({ id: 'b', spec: {} }, 'a')).toThrow('the file is for database b, not a')
  })

  it('parses --diff ranges and resolves version prefixes', () => {
    expect(parseRange('ab..cd')).toEqual({ from: 'ab', to: 'cd' })
    expect(parseRange('..cd')).toEqual({ to: 'cd' })
    expect(() => parseRange('..')).toThrow(/expected FROM\.\.TO/)
    const changes = [{ version: 'abc1', time: '', host_id: '', operation: '' }, { version: 'abd2', time: '', host_id: '', operation: '' }]
    expect(resolveVersion('abc', changes)).toBe('abc1')
    expect(() => resolveVersion('ab', changes)).toThrow(/ambiguous/)
    expect(() => resolveVersion('ff', changes)).toThrow(/no version/)
  })

  it('gives every client command a description and an example in its --help', () => {
    let help = ''
    const program = new Command('pgmesh').exitOverride().configureOutput({ writeOut: s => { help += s } })
    registerClientCommands(program)
    const leaves: Command[] = []
    const walk = (c: Command): void => { if (c.commands.length === 0) leaves.push(c); else c.commands.forEach(walk) }
    walk(program)
    expect(leaves.length).toBeGreaterThanOrEqual(26)
    for (const leaf of leaves) {
      help = ''
      leaf.outputHelp()
      expect(leaf.description(), leaf.name()).not.toBe('')
      expect(help, `pgmesh … ${leaf.name()} --help`).toMatch(/\nExample:\n {2}\S/)
    }
  })
})

describe('pgmesh db restore\'s request', () => {
  const spec = async (): Promise<{ database_name: string }> => ({ database_name: 'storefront' })

  it('from flags: the repository, this database\'s backups of the first target node, its name from its spec', async () => {
    const body = await restoreBody('storefront', { repo: 'posix:/backups', repoId: 'local', nodes: ['n2'], options: { type: 'immediate' } }, spec)
    expect(body).toEqual({
      restore_config: {
        repository: { type: 'posix', base_path: '/backups', id: 'local' }, source_database_id: 'storefront', source_node_name: 'n2',
        source_database_name: 'storefront', restore_options: { type: 'immediate' }
      },
      target_nodes: ['n2']
    })
  })

  it('from a file (a bare restore_config or a request), flags overriding it; keys never from flags', async () => {
    const file = { source_database_id: 'other', source_node_name: 'n1', source_database_name: 'shop', repository: { type: 's3', s3_bucket: 'b', s3_key: 'k' } }
    const body = await restoreBody('storefront', { file, options: { type: 'time', target: 'x' } }, spec)
    expect(body.restore_config).toEqual({ ...file, restore_options: { type: 'time', target: 'x' } })
    expect((await restoreBody('storefront', { file: { restore_config: file, target_nodes: ['n3'] } }, spec)).target_nodes).toEqual(['n3'])
    await expect(restoreBody('storefront', { repo: 's3:bucket' }, spec)).rejects.toThrow(/use -f/)
    await expect(restoreBody('storefront', {}, spec)).rejects.toThrow(/-f restore.yaml, or --repo/)
    await expect(restoreBody('storefront', { repo: 'posix:/b', sourceDatabase: 'other' }, spec)).rejects.toThrow(/source_database_name/)
  })
})
