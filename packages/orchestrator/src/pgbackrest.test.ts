import type { InstanceBackup } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { archiveCommand, backupArgs, renderPgbackrestConf, renderRestoreConf, repositoryPath, restoreArgs } from './pgbackrest.js'

const paths = { config: '/d/i/pgbackrest.conf', pgdata: '/d/i/pgdata', socketDir: '/d/i/run', port: 5433, lockDir: '/d/i/pgbackrest-lock', logDir: '/d/i/log' }

describe('pgBackRest config of an instance', () => {
  it('lays repositories out as the anchor does, with its defaults', () => {
    expect(repositoryPath({ id: 'r1', base_path: '/backups' }, 'db1', 'n2')).toBe('/backups/databases/db1/r1/n2')
    expect(repositoryPath({ base_path: '/backups/' }, 'db1', 'n2')).toBe('/backups/databases/db1/default/n2')
    const conf = renderPgbackrestConf({ databaseId: 'db1', nodeName: 'n1', repositories: [{ id: 'r1', type: 'posix', base_path: '/b', custom_options: { 'repo3-bundle': 'y' } }] }, paths)
    expect(conf.split('\n')).toEqual(expect.arrayContaining([
      '[global]', 'repo1-type=posix', 'repo1-path=/b/databases/db1/r1/n1', 'repo1-cipher-type=none', 'repo1-retention-full=7',
      'repo1-retention-full-type=time', 'repo1-bundle=y', '[db]', 'pg1-path=/d/i/pgdata', 'pg1-socket-path=/d/i/run', 'pg1-port=5433', 'pg1-user=pgmesh',
      'lock-path=/d/i/pgbackrest-lock'
    ]))
  })

  it('puts s3 keys in the file only, and refuses values that would add lines', () => {
    const backup: InstanceBackup = {
      databaseId: 'db1', nodeName: 'n1',
      repositories: [{ type: 's3', s3_bucket: 'bkt', s3_region: 'eu-west-1', s3_key: 'AKIA1', s3_key_secret: 'SECRET1', retention_full: 2, retention_full_type: 'count' }]
    }
    const conf = renderPgbackrestConf(backup, paths)
    expect(conf).toContain('repo1-s3-key-type=shared\nrepo1-s3-key=AKIA1\nrepo1-s3-key-secret=SECRET1')
    expect(conf).toContain('repo1-s3-endpoint=s3.eu-west-1.amazonaws.com')
    expect(conf).toContain('repo1-retention-full=2\nrepo1-retention-full-type=count')
    expect(archiveCommand('/usr/bin/pgbackrest', paths.config)).toBe("'/usr/bin/pgbackrest' --config='/d/i/pgbackrest.conf' --stanza=db archive-push %p")
    expect(() => renderPgbackrestConf({ ...backup, repositories: [{ type: 'posix', base_path: '/b', custom_options: { 'compress-type': 'zst\nrepo1-path=/etc' } }] }, paths))
      .toThrow('must be a single line')
    expect(() => renderPgbackrestConf({ ...backup, repositories: [{ type: 'posix', base_path: '/b', custom_options: { 'cmd-ssh': '/bin/sh' } }] }, paths))
      .toThrow("option 'cmd-ssh' runs a command")
  })

  it('passes a backup\'s type, annotations and checked options as arguments, never the config\'s contents', () => {
    expect(backupArgs(paths.config, { type: 'incr', annotations: { who: 'ops' }, options: { 'compress-level': '3' } })).toEqual([
      '--config=/d/i/pgbackrest.conf', '--stanza=db', '--log-timestamp=n', '--type=incr', '--annotation=who=ops', '--compress-level=3', 'backup'
    ])
    expect(() => backupArgs(paths.config, { type: 'full', options: { 'repo1-path': '/tmp' } })).toThrow("names a path")
  })
})

describe('pgBackRest restore of an instance', () => {
  const restore = { sourceDatabaseId: 'db1', sourceNodeName: 'n1', sourceDatabaseName: 'db1', databaseName: 'db1', repository: { id: 'r1', type: 'posix' as const, base_path: '/b' }, options: {} }

  it('reads the source node\'s repository, without retention, into this instance\'s data directory', () => {
    const conf = renderRestoreConf(restore, paths).split('\n')
    expect(conf).toEqual(expect.arrayContaining(['repo1-type=posix', 'repo1-path=/b/databases/db1/r1/n1', 'repo1-cipher-type=none', 'pg1-path=/d/i/pgdata', 'pg1-port=5433']))
    expect(conf.some(l => l.includes('retention'))).toBe(false)
  })

  it('adds --target-action=promote to a target type without an action, as the anchor does', () => {
    expect(restoreArgs('/c', { type: 'time', target: '2026-01-31 22:00:00+00' })).toEqual([
      '--config=/c', '--stanza=db', '--log-timestamp=n', '--type=time', '--target=2026-01-31 22:00:00+00', '--target-action=promote', 'restore'
    ])
    expect(restoreArgs('/c', { type: 'immediate', 'target-action': 'pause' })).toEqual(['--config=/c', '--stanza=db', '--log-timestamp=n', '--type=immediate', '--target-action=pause', 'restore'])
    expect(restoreArgs('/c', { set: '20260131-220000F' })).toEqual(['--config=/c', '--stanza=db', '--log-timestamp=n', '--set=20260131-220000F', 'restore'])
  })

  it('refuses options that run commands, name paths or servers, and values that would add lines', () => {
    expect(() => restoreArgs('/c', { 'cmd-ssh': '/bin/sh' })).toThrow("restore_options[cmd-ssh]: option 'cmd-ssh' runs a command and is not allowed")
    expect(() => restoreArgs('/c', { 'pg1-path': '/etc' })).toThrow(/names a server/)
    expect(() => restoreArgs('/c', { target: 'a\nrepo1-path=/etc' })).toThrow(/single line/)
  })
})
