import { instanceId, InvalidInputError } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { assertInstanceId, parseInstanceId } from './instance-id.js'

describe('instance ids', () => {
  it('takes apart what the model puts together, also when the database id contains `-` or a node-like part', () => {
    for (const databaseId of ['app', 'my-app', 'app-n2', 'a-n1-b']) {
      const id = instanceId(databaseId, 'n12', 'host-1')
      expect(parseInstanceId(id)).toEqual({ databaseId, nodeName: 'n12', hostHash: id.slice(id.lastIndexOf('-') + 1) })
    }
  })

  it('rejects other shapes', () => {
    for (const id of ['app', 'app-n1', '-n1-abc', 'app-x1-abc', 'app-n1-', 'app-n1-AB', 'mesh-n1']) expect(parseInstanceId(id)).toBeUndefined()
  })

  it('accepts directory-safe ids only', () => {
    expect(() => { assertInstanceId('db-n1-host1') }).not.toThrow()
    expect(() => { assertInstanceId('mesh-n1') }).not.toThrow()
    for (const id of ['', 'Upper', '../x', 'a/b', '-a', 'x'.repeat(64)]) expect(() => { assertInstanceId(id) }).toThrow(InvalidInputError)
  })
})
