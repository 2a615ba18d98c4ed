import type { Database, DatabaseChange, DiffEntry, PgmeshClient } from '@pgmesh/client'
import type { Command } from 'commander'
import { instancesTable } from './cluster.js'
import { clientAction, withClientOptions } from './context.js'
import { registerEdit } from './edit.js'
import { UsageError } from './errors.js'
import { type Painter, cell, fields, machine, paintState, stateCell, table } from './output.js'
import { registerPsql } from './psql.js'
import { createBody, readSpecFile, updateBody } from './spec-file.js'
import { startedTask, withWait } from './wait.js'

function nodesOf (db: Database): string {
  const nodes = db.spec?.nodes ?? []
  return nodes.map(n => `${n.name} (${n.host_ids.join(', ')})`).join(', ')
}

export function databaseText (db: Database, paint: Painter): string {
  const spec = db.spec
  const users = spec?.database_users?.map(u => `${u.username}${u.db_owner === true ? ' (owner)' : ''}`).join(', ')
  const parts = [fields([
    ['id', db.id],
    ['state', paintState(db.state, paint)],
    ['database name', spec?.database_name],
    ['postgres', spec?.postgres_version],
    ['nodes', nodesOf(db)],
    ['users', users],
    ['tenant', db.tenant_id],
    ['created', db.created_at],
    ['updated', db.updated_at],
    ['conflicts', (db.conflicts?.length ?? 0) > 0 ? paint.yellow(`${db.conflicts?.length ?? 0} (pgmesh db conflicts ${db.id})`) : undefined]
  ])]
  for (const e of db.spec_errors ?? []) parts.push(`${paint.red('spec error:')} ${e}\n`)
  if (db.instances.length > 0) parts.push('\n' + instancesTable(db.instances, paint))
  for (const i of db.instances) if (i.error !== undefined) parts.push(`${i.id}: ${paint.red(i.error)}\n`)
  return parts.join('')
}

/** `abc..def`, `abc..` or `..def`; each side a version or a unique prefix of one from the history. */
export function parseRange (range: string): { from?: string, to?: string } {
  const m = /^([0-9a-f]*)\.\.([0-9a-f]*)$/.exec(range)
  if (m === null || (m[1] === '' && m[2] === '')) throw new UsageError(`--diff ${range}: expected FROM..TO (versions or their prefixes, as pgmesh db history lists them)`)
  return { ...(m[1] === '' ? {} : { from: m[1] }), ...(m[2] === '' ? {} : { to: m[2] }) }
}

export function resolveVersion (prefix: string, changes: readonly DatabaseChange[]): string {
  const found = [...new Set(changes.map(c => c.version).filter(v => v.startsWith(prefix)))]
  if (found.length === 1 && found[0] !== undefined) return found[0]
  throw new UsageError(found.length === 0 ? `no version of the history starts with ${prefix}` : `${prefix} is ambiguous: ${found.map(v => v.slice(0, 12)).join(', ')}`)
}

function diffLine (d: DiffEntry, paint: Painter): string {
  const show = (v: unknown): string => JSON.stringify(v)
  if (d.action === 'removed') return `${paint.red('-')} ${d.path}: ${show(d.before)}`
  if (d.before === undefined) return `${paint.green('+')} ${d.path}: ${show(d.after)}`
  return `${paint.yellow('~')} ${d.path}: ${show(d.before)} → ${show(d.after)}`
}

async function history (client: PgmeshClient, id: string, range: string | undefined): Promise<{ changes: DatabaseChange[], diff?: DiffEntry[] }> {
  if (range === undefined) return await client.history(id)
  const wanted = parseRange(range)
  const { changes } = await client.history(id)
  const from = wanted.from === undefined ? undefined : resolveVersion(wanted.from, changes)
  const to = wanted.to === undefined ? undefined : resolveVersion(wanted.to, changes)
  return await client.history(id, { ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }) })
}

export function registerDatabaseCommands (program: Command): Command {
  const db = program.command('db').description('databases: create, inspect, change, delete, connect')

  withClientOptions(db.command('list'))
    .description('every database with its state and nodes')
    .addHelpText('after', '\nExample:\n  pgmesh db list -o json\n')
    .action(clientAction(async (ctx) => {
      const list = await ctx.client.databases()
      const out = machine(ctx.format, { databases: list })
      if (out !== undefined) return ctx.out(out)
      ctx.out(table(['DATABASE', 'STATE', 'NODES', 'INSTANCES', 'UPDATED'], [...list].sort((a, b) => a.id.localeCompare(b.id)).map(d => [
        d.id,
        stateCell(d.state, ctx.paint),
        cell([...new Set(d.instances.map(i => i.node_name))].join(',')),
        `${d.instances.filter(i => i.state === 'available').length}/${d.instances.length} available`,
        d.updated_at
      ]), ctx.paint))
    }))

  withClientOptions(db.command('get'))
    .description('one database: state, spec summary, instances (-o yaml for everything, spec included)')
    .argument('<id>', 'database id')
    .addHelpText('after', '\nExample:\n  pgmesh db get storefront -o yaml\n')
    .action(clientAction(async (ctx, _opts, id: string) => {
      const found = await ctx.client.database(id)
      const out = machine(ctx.format, found)
      ctx.out(out ?? databaseText(found, ctx.paint))
    }))

  withWait(withClientOptions(db.command('create')))
    .description('create a database from a spec file (JSON or YAML): a request body {id, spec} or a bare spec with --id')
    .requiredOption('-f, --file <file>', 'the spec file, - for standard input')
    .option('--id <id>', 'the database id (default: the file\'s id, else a random UUID)')
    .addHelpText('after', '\nExample:\n  pgmesh db create -f storefront.yaml --id storefront --wait\n\nstorefront.yaml:\n  database_name: storefront\n  database_users: [{ username: admin, password: secret, db_owner: true, attributes: [LOGIN] }]\n  nodes: [{ name: n1, host_ids: [host-1] }, { name: n2, host_ids: [host-2] }]\n')
    .action(clientAction(async (ctx, opts) => {
      const body = createBody(await readSpecFile(opts.file as string), opts.id as string | undefined)
      await startedTask(ctx, await ctx.client.createDatabase(body), opts.wait as boolean | undefined)
    }))

  withWait(withClientOptions(db.command('update')))
    .description('replace a database\'s spec with a file (JSON or YAML; omitted passwords keep their values)')
    .argument('<id>', 'database id')
    .requiredOption('-f, --file <file>', 'the spec file ({spec} or a bare spec), - for standard input')
    .option('--force-update', 're-apply the spec even if it did not change')
    .addHelpText('after', '\nExample:\n  pgmesh db get storefront -o yaml | yq .spec > spec.yaml; $EDITOR spec.yaml\n  pgmesh db update storefront -f spec.yaml --wait\n')
    .action(clientAction(async (ctx, opts, id: string) => {
      const body = updateBody(await readSpecFile(opts.file as string), id)
      await startedTask(ctx, await ctx.client.updateDatabase(id, body, { forceUpdate: opts.forceUpdate === true }), opts.wait as boolean | undefined)
    }))

  registerEdit(db)

  withWait(withClientOptions(db.command('delete')))
    .description('delete a database: its instances and their data')
    .argument('<id>', 'database id')
    .option('--force', 'delete even while another operation is in progress')
    .addHelpText('after', '\nExample:\n  pgmesh db delete storefront --wait\n')
    .action(clientAction(async (ctx, opts, id: string) => {
      await startedTask(ctx, await ctx.client.deleteDatabase(id, { force: opts.force === true }), opts.wait as boolean | undefined)
    }))

  withClientOptions(db.command('history'))
    .description('every change to a database (time, host, operation); --diff shows what changed between two versions')
    .argument('<id>', 'database id')
    .option('--diff <from..to>', 'versions (or unique prefixes) to compare; FROM.. or ..TO leave one side to the API\'s default')
    .addHelpText('after', '\nExample:\n  pgmesh db history storefront\n  pgmesh db history storefront --diff 3f2a..9c1e\n')
    .action(clientAction(async (ctx, opts, id: string) => {
      const res = await history(ctx.client, id, opts.diff as string | undefined)
      const out = machine(ctx.format, res)
      if (out !== undefined) return ctx.out(out)
      if (res.diff !== undefined) {
        ctx.out(res.diff.length === 0 ? 'No differences.\n' : res.diff.map(d => diffLine(d, ctx.paint)).join('\n') + '\n')
        return
      }
      ctx.out(table(['VERSION', 'TIME', 'HOST', 'OPERATION'], res.changes.map(c => [c.version.slice(0, 12), c.time, c.host_id, c.operation]), ctx.paint))
    }))

  withClientOptions(db.command('conflicts'))
    .description('fields edited concurrently on different hosts, until an update settles them')
    .argument('<id>', 'database id')
    .addHelpText('after', '\nExample:\n  pgmesh db conflicts storefront\n')
    .action(clientAction(async (ctx, _opts, id: string) => {
      const found = await ctx.client.database(id)
      const conflicts = found.conflicts ?? []
      const out = machine(ctx.format, { conflicts, spec_errors: found.spec_errors ?? [] })
      if (out !== undefined) return ctx.out(out)
      if (conflicts.length === 0) ctx.out(`No conflicts on ${id}.\n`)
      else ctx.out(table(['PATH', 'VALUES (IN EFFECT FIRST)', 'HOSTS'], conflicts.map(c => [c.path === '' ? '(database)' : c.path, c.values.map(v => JSON.stringify(v)).join(' | '), c.hosts.join(', ')]), ctx.paint))
      for (const e of found.spec_errors ?? []) ctx.out(`${ctx.paint.red('spec error:')} ${e}\n`)
    }))

  registerPsql(db)
  return db
}
