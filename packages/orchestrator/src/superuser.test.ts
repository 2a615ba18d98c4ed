import { createHash, createHmac, pbkdf2Sync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { scramVerifierMatches } from './database-setup.js'
import { scramVerifier, superuserPassfile } from './superuser.js'

describe('the superuser password', () => {
  it('is sent as a SCRAM-SHA-256 verifier Postgres stores as it is, which verifies the password and no other', async () => {
    const salt = Buffer.alloc(16, 7)
    const verifier = scramVerifier('pw_-AZ09', salt)
    expect(verifier).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/)
    expect(verifier).not.toContain('pw_-AZ09')
    const salted = pbkdf2Sync('pw_-AZ09', salt, 4096, 32, 'sha256')
    const stored = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest()).digest('base64')
    expect(verifier.split('$')[2]?.split(':')[0]).toBe(stored)
    expect(await scramVerifierMatches(verifier, 'pw_-AZ09')).toBe(true)
    expect(await scramVerifierMatches(verifier, 'pw_-AZ08')).toBe(false)
    expect(scramVerifier('pw_-AZ09')).not.toBe(scramVerifier('pw_-AZ09'))
  })

  it('is written to a libpq password file for pgmesh only, and refused when it would need escaping', () => {
    expect(superuserPassfile('abc_-9')).toBe('*:*:*:pgmesh:abc_-9\n')
    expect(() => superuserPassfile('a:b')).toThrow(/base64url/)
  })
})
