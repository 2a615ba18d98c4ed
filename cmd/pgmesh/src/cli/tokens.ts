import type { Command } from 'commander'
import { clientAction, withClientOptions } from './context.js'
import { UsageError } from './errors.js'
import { cell, fields, machine, table } from './output.js'

/** `pgmesh token create|list|revoke`: the API's bearer tokens (viewer or operator). */
export function registerTokenCommands (program: Command): void {
  const token = program.command('token').description('bearer tokens of the API: create, list, revoke')

  withClientOptions(token.command('create'))
    .description('create a token; its secret is printed once and stored nowhere')
    .requiredOption('--name <name>', 'what the token is for')
    .option('--role <role>', 'viewer (reads only) or operator (everything)', 'viewer')
    .option('--expires-in <duration>', 'e.g. 3600, 15m, 24h, 30d (default: never)')
    .addHelpText('after', '\nExample:\n  PGMESH_TOKEN=$(pgmesh token create --name grafana --role viewer -o json | jq -r .token)\n')
    .action(clientAction(async (ctx, opts) => {
      const role = opts.role as string
      if (role !== 'viewer' && role !== 'operator') throw new UsageError('--role must be viewer or operator')
      const created = await ctx.client.createToken({ name: opts.name as string, role, ...(opts.expiresIn === undefined ? {} : { expires_in: opts.expiresIn as string }) })
      const out = machine(ctx.format, created)
      if (out !== undefined) return ctx.out(out)
      ctx.out(fields([['id', created.id], ['role', created.role], ['expires', created.expires_at ?? 'never'], ['token', created.token]]))
      ctx.err('The token is shown only now: keep it (e.g. in PGMESH_TOKEN).\n')
    }))

  withClientOptions(token.command('list', { isDefault: true }))
    .description('every token (never their secrets)')
    .addHelpText('after', '\nExample:\n  pgmesh token list -o json\n')
    .action(clientAction(async (ctx) => {
      const list = await ctx.client.tokens()
      const out = machine(ctx.format, { tokens: list })
      if (out !== undefined) return ctx.out(out)
      ctx.out(table(['ID', 'NAME', 'ROLE', 'CREATED', 'EXPIRES'], list.map(t => [t.id, t.name, t.role, t.created_at, cell(t.expires_at)]), ctx.paint))
    }))

  withClientOptions(token.command('revoke'))
    .description('revoke a token on every host')
    .argument('<id>', 'the token\'s id (pgmesh token list)')
    .addHelpText('after', '\nExample:\n  pgmesh token revoke 3f2a9c0d1b7e4a65\n')
    .action(clientAction(async (ctx, _opts, id: string) => {
      await ctx.client.revokeToken(id)
      const out = machine(ctx.format, { revoked: id })
      if (out !== undefined) return ctx.out(out)
      ctx.out(`Token ${id} revoked.\n`)
    }))
}
