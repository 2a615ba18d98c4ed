import { type ApiTask, ApiRequestError, type PgmeshClient, type TaskRef, isFinished } from '@pgmesh/client'
import { type Command, Option } from 'commander'
import { type Context, clientAction, withClientOptions } from './context.js'
import { UsageError } from './errors.js'
import { cell, machine, stateCell, table } from './output.js'
import { describeTask, formatEntry, waitForTask } from './wait.js'

function scopeOptions (command: Command): Command {
  return command
    .addOption(new Option('--db <id>', 'the task is a database\'s').conflicts('host'))
    .addOption(new Option('--host <id>', 'the task is a host\'s').conflicts('db'))
}

/** The task's scope from --db/--host, or looked up by id across every scope. */
async function locate (client: PgmeshClient, taskId: string, opts: { db?: string, host?: string }): Promise<TaskRef> {
  if (opts.db !== undefined) return { scope: 'database', entityId: opts.db, taskId }
  if (opts.host !== undefined) return { scope: 'host', entityId: opts.host, taskId }
  const found = await client.findTask(taskId)
  if (found === undefined) throw new ApiRequestError(404, 'not_found', 'no task found with the given ID', client.server, 'GET', '/v1/tasks')
  return { scope: found.scope, entityId: found.entity_id, taskId }
}

export function tasksTable (tasks: readonly ApiTask[], ctx: Context): string {
  return table(['TASK', 'SCOPE', 'ENTITY', 'TYPE', 'STATUS', 'CREATED', 'COMPLETED', 'ERROR'], tasks.map(t => [
    t.task_id, t.scope, t.entity_id, t.type, stateCell(t.status, ctx.paint), t.created_at, cell(t.completed_at), cell(t.error?.split('\n')[0])
  ]), ctx.paint)
}

export function registerTaskCommands (program: Command): void {
  const task = program.command('task').description('tasks: list, inspect, follow and cancel the control plane\'s work')

  scopeOptions(withClientOptions(task.command('list')))
    .description('tasks, newest first: every scope\'s, or one database\'s or host\'s')
    .option('--limit <n>', 'at most this many', v => Number.parseInt(v, 10))
    .addHelpText('after', '\nExample:\n  pgmesh task list --db storefront --limit 5\n')
    .action(clientAction(async (ctx, opts) => {
      const limit = opts.limit as number | undefined
      if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError('--limit must be a positive integer')
      const filter = opts.db !== undefined ? { scope: 'database' as const, entityId: opts.db as string } : opts.host !== undefined ? { scope: 'host' as const, entityId: opts.host as string } : {}
      const list = await ctx.client.tasks({ ...filter, ...(limit === undefined ? {} : { limit }) })
      const out = machine(ctx.format, { tasks: list })
      ctx.out(out ?? (list.length === 0 ? 'No tasks.\n' : tasksTable(list, ctx)))
    }))

  scopeOptions(withClientOptions(task.command('get')))
    .description('one task')
    .argument('<task-id>', 'task id')
    .addHelpText('after', '\nExample:\n  pgmesh task get 0190c1d2-… --db storefront\n')
    .action(clientAction(async (ctx, opts, taskId: string) => {
      const found = await ctx.client.task(await locate(ctx.client, taskId, opts))
      ctx.out(machine(ctx.format, found) ?? describeTask(found, ctx.paint))
    }))

  scopeOptions(withClientOptions(task.command('logs')))
    .description('a task\'s log, one line per entry (time, host, message); --follow until the task ends')
    .argument('<task-id>', 'task id')
    .option('-f, --follow', 'keep printing new entries until the task ends; exit 4 unless it completed')
    .addHelpText('after', '\nExample:\n  pgmesh task logs 0190c1d2-… --follow\n')
    .action(clientAction(async (ctx, opts, taskId: string) => {
      const ref = await locate(ctx.client, taskId, opts)
      if (opts.follow === true) {
        const found = await ctx.client.task(ref)
        if (!isFinished(found.status)) {
          await waitForTask(ctx, found)
          return
        }
      }
      const log = await ctx.client.taskLog(ref)
      const out = machine(ctx.format, log)
      if (out !== undefined) return ctx.out(out)
      for (const e of log.entries) ctx.out(formatEntry(e, ctx.paint) + '\n')
      if (opts.follow === true) ctx.out(`Task ${taskId} ${log.task_status}.\n`)
    }))

  withClientOptions(task.command('cancel'))
    .description('cancel a pending or running database task')
    .argument('<task-id>', 'task id')
    .requiredOption('--db <id>', 'the database the task belongs to')
    .addHelpText('after', '\nExample:\n  pgmesh task cancel 0190c1d2-… --db storefront\n')
    .action(clientAction(async (ctx, opts, taskId: string) => {
      const res = await ctx.client.cancelTask(opts.db as string, taskId)
      ctx.out(machine(ctx.format, res) ?? describeTask(res, ctx.paint))
    }))
}
