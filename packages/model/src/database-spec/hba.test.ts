import { describe, expect, it } from 'vitest'
import { hbaEntryProblem, identEntryProblem, isCommentLine } from './hba.js'

describe('pg_hba lines', () => {
  it('accepts every connection type with enough fields, whatever the method', () => {
    for (const line of [
      'local all all peer', 'host all all 10.0.0.0/8 scram-sha-256', 'hostssl db "user name" 0.0.0.0/0 cert clientcert=verify-full',
      'hostnossl all all 192.168.0.1 255.255.255.255 md5', 'hostgssenc all all ::1/128 gss', 'hostnogssenc all all all trust',
      'include /etc/extra.conf', 'include_if_exists extra.conf', 'include_dir conf.d', 'host all all 10.0.0.0/8 made-up-method # trailing'
    ]) expect(hbaEntryProblem(line), line).toBeUndefined()
  })

  it('rejects lines that are not entries', () => {
    expect(hbaEntryProblem('hots all all 0/0 trust')).toBe('unknown connection type "hots"')
    expect(hbaEntryProblem('local all all')).toBe('local entry requires database, user, and an auth method')
    expect(hbaEntryProblem('hostssl all all md5')).toBe('hostssl entry requires database, user, address, and an auth method')
    expect(hbaEntryProblem('include a b')).toBe('include requires exactly one path argument')
    expect(hbaEntryProblem('host "all all 0/0 md5')).toBe('unterminated quoted string')
    expect(hbaEntryProblem('# only a comment')).toBe('empty entry')
  })

  it('treats blank and comment lines as comments', () => {
    expect(isCommentLine('   ')).toBe(true)
    expect(isCommentLine('  # note')).toBe(true)
    expect(isCommentLine('host all all all trust # note')).toBe(false)
  })
})

describe('pg_ident lines', () => {
  it('needs exactly map, system user and postgres user, or an include', () => {
    expect(identEntryProblem('certs "CN=alice smith" alice')).toBeUndefined()
    expect(identEntryProblem('include_dir ident.d')).toBeUndefined()
    expect(identEntryProblem('certs alice')).toBe('pg_ident entry requires map-name, system-username, and postgres-username')
    expect(identEntryProblem('certs a b c')).toBe('pg_ident entry requires map-name, system-username, and postgres-username')
  })
})
