import { spawn } from 'node:child_process'
import type { Database, Instance } from '@pgmesh/client'
import type { Command } from 'commander'
import { clientAction, withClientOptions } from './context.js'
import { EXIT, ExitError, UsageError } from './errors.js'
import { machine, table } from './output.js'

export interface Endpoint { node: string, instance: string, host: string, address: string, port: number, role: string }

/** Where each node is reached: its primary (or its only instance) with connection info. */
export function endpoints (db: Database): Endpoint[] {
  const byNode = new Map<string, Instance[]>()
  for (const i of db.instances) byNode.set(i.node_name, [...(byNode.get(i.node_name) ?? []), i])
  const out: Endpoint[] = []
  for (const [node, instances] of byNode) {
    const primary = instances.find(i => i.postgres?.role === 'primary') ?? (instances.length === 1 ? instances[0] : undefined)
    for (const i of instances) {
      const address = i.connection_info?.addresses[0]
      if (address === undefined || i.connection_info === undefined) continue
      out.push({ node, instance: i.id, host: i.host_id, address, port: i.connection_info.port, role: i === primary ? 'primary' : cellRole(i) })
    }
  }
  return out
}

function cellRole (i: Instance): string { return i.postgres?.role ?? '-' }

/** The user psql connects as: the one named, else the database's owner, else its only user. */
export function defaultUser (db: Database, user: string | undefined): string {
  if (user !== undefined) return user
  const users = db.spec?.database_users ?? []
  const owner = users.find(u => u.db_owner === true) ?? (users.length === 1 ? users[0] : undefined)
  if (owner === undefined) throw new UsageError(`database ${db.id} has ${users.length === 0 ? 'no users' : 'several users and no owner'}: name one with --user`)
  return owner.username
}

/** The node's primary endpoint: --node, else the first node. */
export function primaryEndpoint (db: Database, node: string | undefined): Endpoint {
  const nodes = db.spec?.nodes?.map(n => n.name) ?? [...new Set(db.instances.map(i => i.node_name))]
  const wanted = node ?? nodes[0]
  if (wanted === undefined) throw new UsageError(`database ${db.id} has no nodes`)
  if (!nodes.includes(wanted)) throw new UsageError(`database ${db.id} has no node ${wanted} (nodes: ${nodes.join(', ')})`)
  const found = endpoints(db).find(e => e.node === wanted && e.role === 'primary')
  if (found === undefined) throw new UsageError(`node ${wanted} of ${db.id} has no primary with connection info yet (pgmesh db get ${db.id})`)
  return found
}

export function registerPsql (db: Command): void {
  withClientOptions(db.command('psql'))
    .description('run psql against a node\'s primary (the password: PGPASSWORD, ~/.pgpass, or psql asks)')
    .argument('<id>', 'database id')
    .argument('[psql-args...]', 'more psql arguments, after --')
    .option('--node <name>', 'the node (default: the first)')
    .option('--user <name>', 'the user (default: the database owner)')
    .addHelpText('after', '\nExample:\n  PGPASSWORD=secret pgmesh db psql storefront --node n2 -- -c "SELECT count(*) FROM orders"\n')
    .action(clientAction(async (ctx, opts, id: string, extra: string[]) => {
      const found = await ctx.client.database(id)
      const target = primaryEndpoint(found, opts.node as string | undefined)
      const user = defaultUser(found, opts.user as string | undefined)
      const args = ['-h', target.address, '-p', String(target.port), '-U', user, '-d', found.spec?.database_name ?? id, ...extra]
      // psql owns the terminal: Ctrl-C cancels its query, not this process.
      const ignore = (): void => {}
      process.on('SIGINT', ignore)
      try {
        const code = await new Promise<number>((resolve, reject) => {
          const child = spawn(process.env.PGMESH_PSQL ?? 'psql', args, { stdio: 'inherit' })
          child.once('error', (err) => { reject(new UsageError(`psql: ${err.message} (is the PostgreSQL client installed?)`)) })
          child.once('exit', (c, signal) => { resolve(c ?? (signal === null ? EXIT.failure : 128)) })
        })
        if (code !== 0) throw new ExitError(code)
      } finally {
        process.removeListener('SIGINT', ignore)
      }
    }))

  withClientOptions(db.command('connect-info'))
    .description('where each node and instance is reached, and a psql connection string per node')
    .argument('<id>', 'database id')
    .option('--user <name>', 'the user of the connection strings (default: the database owner)')
    .addHelpText('after', '\nExample:\n  pgmesh db connect-info storefront -o json\n')
    .action(clientAction(async (ctx, opts, id: string) => {
      const found = await ctx.client.database(id)
      const list = endpoints(found)
      const dbname = found.spec?.database_name ?? id
      let user: string | undefined
      try { user = defaultUser(found, opts.user as string | undefined) } catch { user = undefined }
      const withDsn = list.map(e => ({
        node_name: e.node, instance_id: e.instance, host_id: e.host, role: e.role, address: e.address, port: e.port,
        dsn: `host=${e.address} port=${e.port} dbname=${dbname}${user === undefined ? '' : ` user=${user}`}`
      }))
      const out = machine(ctx.format, { database_id: id, database_name: dbname, endpoints: withDsn })
      if (out !== undefined) return ctx.out(out)
      if (withDsn.length === 0) {
        ctx.out(`No instance of ${id} reports connection info yet.\n`)
        return
      }
      ctx.out(table(['NODE', 'INSTANCE', 'HOST', 'ROLE', 'ADDRESS', 'PORT', 'PSQL'], withDsn.map(e => [e.node_name, e.instance_id, e.host_id, e.role, e.address, String(e.port), `psql '${e.dsn}'`]), ctx.paint))
    }))
}
