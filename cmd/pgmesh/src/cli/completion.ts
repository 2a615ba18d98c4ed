import type { Command } from 'commander'

/** One completable word and what it does. */
interface Word { word: string, description: string }

/** Each command path (` db create`, '' for the top) with the subcommands and options that may follow it. */
export function completionTable (program: Command): Map<string, Word[]> {
  const out = new Map<string, Word[]>()
  const walk = (command: Command, path: string): void => {
    const words: Word[] = []
    for (const sub of command.commands) {
      words.push({ word: sub.name(), description: sub.description() })
      walk(sub, `${path} ${sub.name()}`)
    }
    for (const option of command.options) {
      if (option.long !== undefined) words.push({ word: option.long, description: option.description })
    }
    words.push({ word: '--help', description: 'show help' })
    out.set(path, words)
  }
  walk(program, '')
  return out
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * A bash completion script: finds the command path among the words typed so far, then offers that command's
 * subcommands and options (files after -f/--file, as bash does by default).
 */
export function bashCompletion (program: Command): string {
  const table = completionTable(program)
  const name = program.name()
  const paths = [...table.keys()].filter(p => p !== '').map(p => quote(p)).join('|')
  const cases = [...table.entries()].map(([path, words]) => `    ${quote(path)}) words=${quote(words.map(w => w.word).join(' '))} ;;`).join('\n')
  return `# bash completion for ${name}; load it with: source <(${name} completion bash)
_${name}_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" cmdpath="" words="" i w
  case "$prev" in -f|--file) COMPREPLY=($(compgen -f -- "$cur")); return ;; esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in -*) continue ;; esac
    case "$cmdpath $w" in
      ${paths === '' ? "''" : paths}) cmdpath="$cmdpath $w" ;;
    esac
  done
  case "$cmdpath" in
${cases}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _${name}_complete ${name}
`
}

/** A zsh completion script with each word's description (`_describe`). */
export function zshCompletion (program: Command): string {
  const table = completionTable(program)
  const name = program.name()
  const paths = [...table.keys()].filter(p => p !== '').map(p => quote(p)).join('|')
  const esc = (s: string): string => s.replace(/:/g, '\\:')
  const cases = [...table.entries()].map(([path, words]) => `    (${quote(path)}) choices=(${words.map(w => quote(`${esc(w.word)}:${w.description}`)).join(' ')}) ;;`).join('\n')
  return `#compdef ${name}
# zsh completion for ${name}; load it with: source <(${name} completion zsh)  (after compinit)
_${name}() {
  local cmdpath="" w i
  local -a choices
  if [[ "\${words[CURRENT-1]}" == (-f|--file) ]]; then _files; return; fi
  for ((i = 2; i < CURRENT; i++)); do
    w="\${words[i]}"
    [[ "$w" == -* ]] && continue
    case "$cmdpath $w" in
      (${paths === '' ? "''" : paths}) cmdpath="$cmdpath $w" ;;
    esac
  done
  case "$cmdpath" in
${cases}
  esac
  _describe -t commands '${name}' choices
}
# Autoloaded from $fpath the file is the function's body's caller; sourced, it registers the function.
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then _${name} "$@"; else compdef _${name} ${name}; fi
`
}

export function registerCompletion (program: Command): void {
  program.command('completion')
    .description('print a shell completion script (bash or zsh)')
    .argument('<shell>', 'bash or zsh')
    .addHelpText('after', '\nExample:\n  source <(pgmesh completion bash)            # in ~/.bashrc\n  pgmesh completion zsh > "${fpath[1]}/_pgmesh"  # zsh, then restart the shell\n')
    .action((shell: string) => {
      if (shell === 'bash') process.stdout.write(bashCompletion(program))
      else if (shell === 'zsh') process.stdout.write(zshCompletion(program))
      else program.error(`error: unknown shell ${shell} (bash or zsh)`, { exitCode: 2 })
    })
}
