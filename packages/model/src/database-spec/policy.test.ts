import { describe, expect, it } from 'vitest'
import { hbaRuleProblem, identRuleProblem } from './hba.js'
import { grantedRoleProblem, imageReferenceProblem, imageRepository, usernameProblem } from './names-policy.js'
import { scriptStatementProblem } from './script-policy.js'
import { isStorableJson, settingProblem } from './settings-policy.js'

describe('settings policy', () => {
  it('lets ordinary tuning through, whatever the case of the name', () => {
    for (const [key, value] of [['work_mem', '64MB'], ['Max_Connections', 500], ['jit', false], ['pglogical.conflict_resolution', 'last_update_wins'],
      ['log_filename', 'pg-%a.log'], ['random_page_cost', 1.1], ['shared_preload_libraries', 'pg_stat_statements, "spock", auto_explain']] as const) {
      expect(settingProblem(key, value), key).toBeUndefined()
    }
  })

  it('names the family of each refused setting', () => {
    expect(settingProblem('archive_command', 'id')).toBe('"archive_command" is not allowed: it runs a shell command as the server\'s OS user')
    expect(settingProblem('session_preload_libraries', 'x')).toMatch(/loads a shared library/)
    expect(settingProblem(' Include_Dir ', '/tmp')).toMatch(/names a file or directory/)
    expect(settingProblem('lo_compat_privileges', true)).toMatch(/permission checks/)
    expect(settingProblem('port', 5432)).toBe('"port" is managed by the orchestrator and cannot be set')
  })

  it('checks names, value types, sizes, line breaks, numbers, libraries and log file names', () => {
    expect(settingProblem('work-mem', '1')).toMatch(/^invalid setting name/)
    expect(settingProblem('a.b.c', '1')).toMatch(/^invalid setting name/)
    expect(settingProblem('work_mem', { a: 1 })).toBe('must be a string, number or boolean')
    expect(settingProblem('work_mem', 'x'.repeat(5000))).toBe('must be at most 4096 characters long')
    expect(settingProblem('work_mem', "1\narchive_command = 'id'")).toBe('must not contain line breaks or NUL')
    expect(settingProblem('work_mem', 2 ** 60)).toMatch(/^must be a finite number/)
    expect(settingProblem('work_mem', Number.NaN)).toMatch(/^must be a finite number/)
    expect(settingProblem('shared_preload_libraries', 'spock,$libdir/evil')).toMatch(/^library "\$libdir\/evil" is not allowed/)
    expect(settingProblem('log_filename', '../../x/%a.log')).toBe('must be a file name, without "/"')
  })

  it('keeps free-form JSON within what the document stores', () => {
    expect(isStorableJson({ a: [1, 'x', { b: true }] })).toBe(true)
    expect(isStorableJson({ a: [2 ** 53] })).toBe(false)
    let deep: unknown = 1
    for (let i = 0; i < 20; i++) deep = [deep]
    expect(isStorableJson(deep)).toBe(false)
  })
})

describe('pg_hba and pg_ident rules', () => {
  it('accepts password, certificate and local rules', () => {
    for (const line of ['host all all 10.0.0.0/8 scram-sha-256', 'hostssl db "user name" 0.0.0.0/0 cert clientcert=verify-full',
      'hostnossl all all 192.168.0.1 255.255.255.255 md5', 'host all all ::1/128 reject', 'host all all .example.com md5',
      'host all all samenet scram-sha-256', 'local all all peer', 'local all all trust', 'local all postgres ident map=m']) {
      expect(hbaRuleProblem(line), line).toBeUndefined()
    }
  })

  it('refuses includes, @file lists, unknown methods, trust/ident/peer over the network and bad addresses', () => {
    expect(hbaRuleProblem('include_if_exists x.conf')).toMatch(/^include directives are not allowed/)
    expect(hbaRuleProblem('local @dbs all peer')).toMatch(/^@file lists are not allowed/)
    expect(hbaRuleProblem('host all all 10.0.0.0/8 made-up')).toBe('unknown auth method "made-up"')
    expect(hbaRuleProblem('hostnogssenc all all all trust')).toMatch(/^method trust is not allowed on network connections/)
    expect(hbaRuleProblem('host all all 10.0.0.0/8 ident')).toMatch(/^method ident is not allowed/)
    expect(hbaRuleProblem('host all all 10.0.0.0/8 peer')).toBe('method peer works only on local connections')
    expect(hbaRuleProblem('host all all 10.0.0.0/33 md5')).toMatch(/^invalid address "10.0.0.0\/33"/)
    expect(hbaRuleProblem('host all all 10.0.0.1 md5')).toBe('an IP address without a prefix length must be followed by a netmask')
    expect(hbaRuleProblem('host all all bad_host! md5')).toMatch(/^invalid address/)
    expect(identRuleProblem('include ident.d/x')).toMatch(/^include directives/)
    expect(identRuleProblem('certs "CN=alice" alice')).toBeUndefined()
  })
})

describe('scripts policy', () => {
  it('lets ordinary setup through', () => {
    for (const statement of ['CREATE TABLE t (id int PRIMARY KEY, note text DEFAULT \'x; y\')', 'CREATE EXTENSION IF NOT EXISTS vector;',
      "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'r') THEN CREATE ROLE r; END IF; END $$",
      'COPY t FROM STDIN', 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO r -- a comment; not a statement', 'CREATE TABLE copy_log (line text)']) {
      expect(scriptStatementProblem(statement), statement).toBeUndefined()
    }
  })

  it('refuses what reaches the OS or files, several statements, and hiding behind comments', () => {
    expect(scriptStatementProblem("COPY t TO/**/PROGRAM 'id'")).toMatch(/^COPY \.\.\. PROGRAM/)
    expect(scriptStatementProblem("copy t to '/tmp/x'")).toMatch(/^COPY to or from a server file/)
    expect(scriptStatementProblem("DO $$ BEGIN COPY t TO '/tmp/x'; END $$")).toMatch(/^COPY to or from a server file/)
    expect(scriptStatementProblem("SELECT pg_ls_logdir()")).toMatch(/^server file functions/)
    expect(scriptStatementProblem("LOAD 'auto_explain'")).toMatch(/^LOAD/)
    expect(scriptStatementProblem("CREATE FUNCTION f() RETURNS int AS 'x', 'f' LANGUAGE 'c'")).toMatch(/LANGUAGE c/)
    expect(scriptStatementProblem('CREATE EXTENSION IF NOT EXISTS "plperlu"')).toMatch(/untrusted code/)
    expect(scriptStatementProblem('CREATE TRUSTED LANGUAGE x HANDLER h')).toMatch(/^CREATE LANGUAGE/)
    expect(scriptStatementProblem('CREATE FUNCTION pgmesh_repl.f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql')).toMatch(/pgmesh_repl/)
    expect(scriptStatementProblem('SELECT 1; SELECT 2')).toBe('must be a single SQL statement')
    expect(scriptStatementProblem("SELECT 'open")).toBe('unterminated quoted string')
    expect(scriptStatementProblem('SELECT 1 /* open')).toBe('unterminated comment')
    expect(scriptStatementProblem('-- only a comment')).toBe('must be a SQL statement')
  })
})

describe('names', () => {
  it('checks usernames and granted roles', () => {
    expect(usernameProblem('app_owner')).toBeUndefined()
    expect(usernameProblem('pgmesh')).toBe('role name "pgmesh" is reserved for the control plane')
    expect(usernameProblem('pg_anything')).toBe('role name "pg_anything" is reserved')
    expect(usernameProblem('public')).toBe('role name "public" is reserved')
    expect(usernameProblem('ü'.repeat(32))).toMatch(/^must be at most 63 bytes/)
    expect(usernameProblem('a\tb')).toBe('must not contain control characters or NUL')
    expect(grantedRoleProblem('pg_read_all_data')).toBeUndefined()
    expect(grantedRoleProblem('pg_write_server_files')).toBe('role "pg_write_server_files" cannot be granted: it writes any file of the server')
  })

  it('checks image references and takes their repository apart', () => {
    for (const image of ['pgmesh/postgres:15', 'ghcr.io/pgedge/pgedge-postgres:17.6-spock5.0.4-standard-1', 'localhost:5000/pg', `pg@sha256:${'0'.repeat(64)}`]) {
      expect(imageReferenceProblem(image), image).toBeUndefined()
    }
    for (const image of ['', 'UPPER/case', 'a b', 'x:tag\n', '-lead/x']) expect(imageReferenceProblem(image), image).toBeDefined()
    expect(imageRepository('localhost:5000/pg/postgres:17@sha256:abc')).toBe('localhost:5000/pg/postgres')
    expect(imageRepository('localhost:5000/pg')).toBe('localhost:5000/pg')
  })
})
