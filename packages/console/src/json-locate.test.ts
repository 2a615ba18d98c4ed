// The spec editor's pointer from a validation message's path to the text of the field.
import { describe, expect, it } from 'vitest'
import { locateField } from './client/json-locate.js'

const SPEC = JSON.stringify({
  database_name: 'app',
  postgresql_conf: { 'pg_stat_statements.track': 'all', work_mem: '4MB' },
  nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-9', 'host-2'] }]
}, null, 2)

const textAt = (path: string): string | undefined => {
  const found = locateField(SPEC, path)
  return found === undefined ? undefined : SPEC.slice(found.start, found.end)
}

describe('locateField', () => {
  it('finds array elements and fields by the API path, with the line a person sees', () => {
    expect(textAt('nodes[1].host_ids[0]')).toBe('"host-9"')
    expect(locateField(SPEC, 'nodes[1].host_ids[0]')).toMatchObject({ line: SPEC.split('\n').findIndex(l => l.includes('"host-9"')) + 1, exact: true })
    expect(textAt('database_name')).toBe('"database_name": "app"')
    expect(textAt('postgresql_conf.pg_stat_statements.track')).toBe('"pg_stat_statements.track": "all"')
    expect(textAt('postgresql_conf.work_mem')).toBe('"work_mem": "4MB"')
  })

  it('points a missing field at the nearest value that holds it, and says it is not exact', () => {
    expect(locateField(SPEC, 'nodes[0].port')).toMatchObject({ exact: false })
    expect(textAt('nodes[0].port')?.startsWith('{')).toBe(true)
    expect(textAt('nodes[7].name')?.startsWith('"nodes"')).toBe(true)
  })

  it('gives up on text that is no JSON', () => {
    expect(locateField('{"a": ', 'a')).toBeUndefined()
    expect(locateField('{"a": 1} x', 'a')).toBeUndefined()
  })
})
