/**
 * The parameter names in `postgres --describe-config`'s output (one tab-separated line per parameter, name first):
 * what the server an instance runs knows, from the host's binaries or from an image.
 */
export function describedParameters (output: string): ReadonlySet<string> {
  return new Set(output.split('\n').map(line => line.split('\t')[0]?.trim() ?? '').filter(name => name !== ''))
}
