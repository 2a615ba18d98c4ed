import { describe, expect, it } from 'vitest'
import { cronProblem, latestCronTick, pgbackrestOptionProblem, pgbackrestValueProblem } from './backup-policy.js'

describe('pgBackRest options a spec or request may pass', () => {
  it('takes plain tuning options, with or without a repoN- prefix', () => {
    for (const name of ['compress-type', 'compress-level', 'process-max', 'repo1-bundle', 'repo2-s3-uri-style', 'repo1-s3-key-type', 'buffer-size', 'start-fast']) {
      expect(pgbackrestOptionProblem(name), name).toBeUndefined()
    }
  })

  it('refuses what runs commands, names files or servers, is pgmesh\'s own, or holds a secret', () => {
    expect(pgbackrestOptionProblem('cmd-ssh')).toBe("option 'cmd-ssh' runs a command and is not allowed")
    expect(pgbackrestOptionProblem('repo1-host-cmd')).toBe("option 'repo1-host-cmd' runs a command and is not allowed")
    expect(pgbackrestOptionProblem('repo1-path')).toBe("option 'repo1-path' names a path and is not allowed")
    expect(pgbackrestOptionProblem('log-path')).toBe("option 'log-path' names a path and is not allowed")
    expect(pgbackrestOptionProblem('repo1-storage-path')).toBe("option 'repo1-storage-path' names a path and is not allowed")
    expect(pgbackrestOptionProblem('pg1-host')).toBe("option 'pg1-host' names a server and is not allowed")
    expect(pgbackrestOptionProblem('repo1-host')).toBe("option 'repo1-host' names a server and is not allowed")
    expect(pgbackrestOptionProblem('stanza')).toBe("option 'stanza' is set by pgmesh")
    expect(pgbackrestOptionProblem('config-include-path')).toBe("option 'config-include-path' is set by pgmesh")
    expect(pgbackrestOptionProblem('repo1-s3-key-secret')).toBe("option 'repo1-s3-key-secret' holds a secret: use the repository's secret fields")
    expect(pgbackrestOptionProblem('repo1-cipher-pass')).toBe("option 'repo1-cipher-pass' holds a secret: use the repository's secret fields")
    expect(pgbackrestOptionProblem('Bad_Name')).toBe('invalid option name')
  })

  it('takes the CA a private S3 endpoint is verified against (only read as certificates)', () => {
    expect(pgbackrestOptionProblem('repo1-storage-ca-file')).toBeUndefined()
    expect(pgbackrestOptionProblem('storage-ca-path')).toBeUndefined()
    expect(pgbackrestOptionProblem('storage-ca-host')).toBe("option 'storage-ca-host' names a server and is not allowed")
  })

  it('lets a use take an owned option it needs (a restore\'s type)', () => {
    expect(pgbackrestOptionProblem('type')).toBe("option 'type' is set by pgmesh")
    expect(pgbackrestOptionProblem('type', ['type'])).toBeUndefined()
  })

  it('refuses values that would add config lines', () => {
    expect(pgbackrestValueProblem('zst')).toBeUndefined()
    expect(pgbackrestValueProblem('x\nrepo1-path=/etc')).toBe('must be a single line')
  })
})

describe('backup schedules (cron in UTC)', () => {
  it('checks expressions', () => {
    expect(cronProblem('0 3 * * *')).toBeUndefined()
    expect(cronProblem('*/15 * * * * *')).toBeUndefined()
    expect(cronProblem('61 * * * *')).toBe('invalid cron expression: Invalid value for minute: 61')
    expect(cronProblem('daily')).toMatch(/^invalid cron expression: /)
  })

  it('gives the latest tick at or before now, in UTC', () => {
    const at = Date.parse('2026-03-10T05:00:00Z')
    expect(new Date(latestCronTick('0 3 * * *', at) ?? 0).toISOString()).toBe('2026-03-10T03:00:00.000Z')
    expect(new Date(latestCronTick('0 3 * * *', Date.parse('2026-03-10T02:59:59Z')) ?? 0).toISOString()).toBe('2026-03-09T03:00:00.000Z')
    // A tick exactly now counts as due.
    expect(latestCronTick('0 3 * * *', Date.parse('2026-03-10T03:00:00Z'))).toBe(Date.parse('2026-03-10T03:00:00Z'))
  })
})
