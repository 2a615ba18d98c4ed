/** A libpq key=value connection string (what pglogical and Spock take as node and provider DSNs). */
export function formatDsn (params: { host: string, port: number, dbname: string, user: string } & Record<string, string | number>): string {
  return Object.entries(params).map(([key, raw]) => {
    const value = String(raw)
    const plain = value !== '' && /^[^\s'\\]+$/.test(value)
    return `${key}=${plain ? value : `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`}`
  }).join(' ')
}
