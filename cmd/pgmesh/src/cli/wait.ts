import { type ApiTask, followTask, type TaskLogEntry, taskRef } from '@pgmesh/client'
import type { Command } from 'commander'
import type { Context } from './context.js'
import { EXIT, ExitError } from './errors.js'
import { type Painter, fields, machine, paintState } from './output.js'

/** `--wait` for every command that starts a task. */
export function withWait (command: Command): Command {
  return command.option('-w, --wait', 'follow the task\'s log until it ends; exit 0 when it completed, 4 when it failed or was canceled')
}

/** One log entry as a line: time, host, message, then any other fields as key=value. */
export function formatEntry (entry: TaskLogEntry, paint: Painter): string {
  const { host_id: host, ...rest } = entry.fields ?? {}
  const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
  return `${paint.dim(entry.timestamp)} ${typeof host === 'string' ? host : '-'}  ${entry.message}${extra === '' ? '' : `  ${paint.dim(extra)}`}`
}

export function describeTask (task: ApiTask, paint: Painter): string {
  return fields([
    ['task', task.task_id],
    ['type', task.type],
    ['status', paintState(task.status, paint)],
    ['scope', `${task.scope} ${task.entity_id}`],
    ['node', task.node_name],
    ['instance', task.instance_id],
    ['host', task.host_id],
    ['parent', task.parent_id],
    ['created', task.created_at],
    ['completed', task.completed_at],
    ['error', task.error]
  ])
}

/** A spinner on stderr while a task runs, cleared around every printed line; nothing when stderr is not a terminal. */
class ProgressLine {
  private static readonly FRAMES = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏'
  private timer: NodeJS.Timeout | undefined
  private frame = 0
  private status = 'pending'
  private readonly started = Date.now()

  constructor (private readonly label: string, private readonly enabled: boolean) {
    if (enabled) this.timer = setInterval(() => { this.draw() }, 100)
  }

  setStatus (status: string): void { this.status = status }

  /** Runs `print` with the line out of the way. */
  around (print: () => void): void {
    if (this.enabled) process.stderr.write('\r\x1b[2K')
    print()
    if (this.enabled) this.draw()
  }

  private draw (): void {
    this.frame = (this.frame + 1) % ProgressLine.FRAMES.length
    const seconds = Math.floor((Date.now() - this.started) / 1000)
    process.stderr.write(`\r\x1b[2K${ProgressLine.FRAMES[this.frame] ?? ''} ${this.label}: ${this.status} ${seconds}s`)
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    if (this.enabled) process.stderr.write('\r\x1b[2K')
  }
}

/**
 * Follows a task to its end, printing its log as it grows: on stdout in the table format, on stderr with -o json|yaml
 * (stdout then gets the finished task alone). Ctrl-C stops following and leaves the task running. Exits 4 unless
 * the task completed.
 */
export async function waitForTask (ctx: Context, task: ApiTask): Promise<void> {
  const human = ctx.format === 'table'
  const print = human ? ctx.out : ctx.err
  const paint = human ? ctx.paint : ctx.errPaint
  const started = Date.now()
  print(`Following task ${task.task_id} (${task.type}${task.scope === 'database' ? ` of ${task.entity_id}` : ` of host ${task.entity_id}`}); Ctrl-C stops following, not the task.\n`)
  const progress = new ProgressLine(`${task.type} ${task.entity_id}`, ctx.stderrTTY)
  const stop = new AbortController()
  const onSigint = (): void => { stop.abort(new ExitError(EXIT.interrupted)) }
  process.once('SIGINT', onSigint)
  let finished: ApiTask
  try {
    finished = await followTask(ctx.client, taskRef(task), {
      signal: stop.signal,
      onEntries: entries => { progress.around(() => { for (const e of entries) print(formatEntry(e, paint) + '\n') }) },
      onStatus: status => { progress.setStatus(status) }
    })
  } catch (err) {
    progress.stop()
    if (err instanceof ExitError && stop.signal.aborted) {
      ctx.err(`\nStopped following; task ${task.task_id} goes on. Follow it again: pgmesh task logs ${task.task_id} --follow\n`)
    }
    throw err
  } finally {
    process.removeListener('SIGINT', onSigint)
  }
  progress.stop()
  const took = `${((Date.now() - started) / 1000).toFixed(1)} s`
  const out = machine(ctx.format, finished)
  if (out !== undefined) ctx.out(out)
  if (finished.status === 'completed') {
    print(`Task ${finished.task_id} ${paintState('completed', paint)} after ${took}.\n`)
    return
  }
  const p = ctx.errPaint
  ctx.err(`${p.red('error:')} task ${finished.task_id} (${finished.type}) ${finished.status} after ${took}${finished.error === undefined ? '' : ':'}\n`)
  if (finished.error !== undefined) for (const line of finished.error.split('\n')) ctx.err(`  ${line}\n`)
  throw new ExitError(EXIT.task)
}

/** What a command that started a task prints: the API's answer (-o json|yaml) or a line, then follows it on --wait. */
export async function startedTask (ctx: Context, response: { task: ApiTask }, wait: boolean | undefined): Promise<void> {
  const { task } = response
  if (wait !== true) {
    const out = machine(ctx.format, response)
    if (out !== undefined) {
      ctx.out(out)
      return
    }
    ctx.out(`Task ${task.task_id} (${task.type} ${task.entity_id}) ${paintState(task.status, ctx.paint)}. Follow it: pgmesh task logs ${task.task_id} --follow\n`)
    return
  }
  await waitForTask(ctx, task)
}
