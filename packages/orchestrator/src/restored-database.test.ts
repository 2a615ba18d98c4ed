import { describe, expect, it } from 'vitest'
import { withoutReplicationLibraries } from './restored-database.js'

describe('a restored server before it is adopted', () => {
  it('loads no replication extension, so none of the backup\'s subscriptions starts a worker', () => {
    const settings = new Map([['shared_preload_libraries', "'pg_stat_statements,pglogical'"], ['port', '5432']])
    const out = withoutReplicationLibraries(settings)
    expect(out.get('shared_preload_libraries')).toBe("'pg_stat_statements'")
    expect(out.get('port')).toBe('5432')
    expect(settings.get('shared_preload_libraries')).toBe("'pg_stat_statements,pglogical'")
    expect(withoutReplicationLibraries(new Map([['shared_preload_libraries', "'spock'"]])).get('shared_preload_libraries')).toBe("''")
  })
})
