import { type ClusterDoc, type HostRecord, instanceId } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { MemberDirectory } from './member-directory.js'

const host = (id: string, peer: string): HostRecord => ({
  id, peer_id: peer, peer_addresses: [], client_addresses: [], api_url: '', orchestrator: 'process', data_dir: '', cpus: 1, memory: 1, joined_at: ''
})

describe('MemberDirectory', () => {
  it('lets a peer speak only for the host the document binds it to, and a removed peer for none', () => {
    let doc: Partial<ClusterDoc> = { hosts: { 'host-1': host('host-1', 'P1'), 'host-2': host('host-2', 'P2') }, removed_peers: {} }
    const members = new MemberDirectory(() => doc)
    expect(members.authorizeSender('P2', 'host-2')).toBe(true)
    expect(members.authorizeSender('P1', 'host-2')).toBe(false)
    expect(members.authorizeSender('stranger', 'host-2')).toBe(false)
    expect(members.authorizeSender('', 'host-2')).toBe(false)
    expect(members.speaksForInstance('P2', instanceId('db', 'n1', 'host-2'))).toBe(true)
    expect(members.speaksForInstance('P1', instanceId('db', 'n1', 'host-2'))).toBe(false)
    expect(members.speaksForInstance('stranger', instanceId('db', 'n1', 'host-2'))).toBe(false)
    expect(members.knows('host-2')).toBe(true)
    expect(members.knows('host-9')).toBe(false)

    // host-2 removed; a concurrent edit of its old record (a removed host returning with its old document) may have
    // kept the record, but its peer id is in removed_peers: refused all the same.
    doc = { ...doc, removed_peers: { P2: { host_id: 'host-2', removed_at: '' } } }
    expect(members.isRemoved('P2')).toBe(true)
    expect(members.authorizeSender('P2', 'host-2')).toBe(false)
    expect(members.speaksForInstance('P2', instanceId('db', 'n1', 'host-2'))).toBe(false)
    expect(members.authorizeSender('P1', 'host-1')).toBe(true)
  })
})
