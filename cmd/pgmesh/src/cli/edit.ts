import { spawn } from 'node:child_process'
import { isDeepStrictEqual } from 'node:util'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline/promises'
import { ApiRequestError } from '@pgmesh/client'
import type { Command } from 'commander'
import { stringify } from 'yaml'
import { clientAction, withClientOptions } from './context.js'
import { EXIT, ExitError, UsageError, reportError } from './errors.js'
import { parseSpecText } from './spec-file.js'
import { startedTask, withWait } from './wait.js'

/** $VISUAL, then $EDITOR, then vi; may carry arguments (`code -w`), so it runs through the shell. */
export function editorCommand (env: NodeJS.ProcessEnv = process.env): string {
  for (const v of [env.VISUAL, env.EDITOR]) if (v !== undefined && v.trim() !== '') return v
  return 'vi'
}

async function runEditor (file: string): Promise<void> {
  const editor = editorCommand()
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', `${editor} "$1"`, 'sh', file], { stdio: 'inherit' })
    child.once('error', reject)
    child.once('exit', c => { resolve(c ?? 1) })
  })
  if (code !== 0) throw new UsageError(`the editor (${editor}) exited with ${code}; nothing was changed`)
}

/** The file the editor opens: the spec as YAML below a comment saying how, and why the last try failed. */
export function editBuffer (id: string, specYaml: string, problem?: string): string {
  const head = [
    `# The spec of database ${id}. Save and quit to update it; an unchanged spec changes nothing.`,
    '# Passwords and keys are not shown: left out, they keep their stored values.'
  ]
  if (problem !== undefined) head.push('#', '# The last edit was refused:', ...problem.split('\n').map(l => `#   ${l}`))
  return `${head.join('\n')}\n${specYaml}`
}

/** Comment lines the buffer starts with are dropped before parsing (YAML ignores them anyway; JSON would not). */
function stripHead (text: string): string {
  const lines = text.split('\n')
  let i = 0
  while (i < lines.length && (lines[i]?.startsWith('#') === true)) i++
  return lines.slice(i).join('\n')
}

async function askAgain (): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    const answer = (await rl.question('Edit again? [Y/n] ')).trim().toLowerCase()
    return answer === '' || answer === 'y' || answer === 'yes'
  } finally {
    rl.close()
  }
}

export function registerEdit (db: Command): void {
  withWait(withClientOptions(db.command('edit')))
    .description('edit a database\'s spec as YAML in $VISUAL or $EDITOR, then update it')
    .argument('<id>', 'database id')
    .addHelpText('after', '\nAn unchanged spec sends no update. A refused edit shows the API\'s error and, on a terminal, offers to edit again.\n\nExample:\n  EDITOR=nano pgmesh db edit storefront --wait\n')
    .action(clientAction(async (ctx, opts, id: string) => {
      const current = await ctx.client.database(id)
      const original = current.spec ?? {}
      const dir = await mkdtemp(join(tmpdir(), 'pgmesh-edit-'))
      const file = join(dir, `${id}.yaml`)
      try {
        let text = stringify(original, { lineWidth: 0 })
        let problem: string | undefined
        for (;;) {
          await writeFile(file, editBuffer(id, text, problem), { mode: 0o600 })
          await runEditor(file)
          const edited = await readFile(file, 'utf8')
          text = stripHead(edited)
          try {
            const spec = parseSpecText(text, `${id}.yaml`)
            if (isDeepStrictEqual(spec, original)) {
              ctx.err('Edit cancelled: the spec is unchanged, nothing was sent.\n')
              return
            }
            const res = await ctx.client.updateDatabase(id, { spec })
            await startedTask(ctx, res, opts.wait as boolean | undefined)
            return
          } catch (err) {
            if (!(err instanceof UsageError || (err instanceof ApiRequestError && err.status === 400))) throw err
            const code = reportError(err, ctx.errPaint, ctx.err)
            if (!(ctx.stdinTTY && ctx.stderrTTY) || !(await askAgain())) throw new ExitError(code === EXIT.usage ? EXIT.usage : EXIT.api)
            problem = err instanceof ApiRequestError ? err.apiMessage : err.message
          }
        }
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    }))
}
