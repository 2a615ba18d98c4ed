// A client that inserts numbered rows into one Postgres as fast as it can, printing `ack <id> <ms>` for each
// acknowledged insert and `err <ms> <message>` for each failure; run inside a host's network namespace to write from
// that side of a partition. Args: host port user database prefix; the password comes in PGPASSWORD (not on the
// command line, where `ps` shows it).
import pg from 'pg'

const [host, port, user, database, prefix] = process.argv.slice(2)
const password = process.env.PGPASSWORD
let next = 0
let client
process.on('SIGTERM', () => { process.exit(0) })
for (;;) {
  try {
    if (client === undefined) {
      client = new pg.Client({ host, port: Number(port), user, password, database, connectionTimeoutMillis: 1000 })
      client.on('error', () => {})
      await client.connect()
    }
    const id = `${prefix}-${next++}`
    await client.query('INSERT INTO public.events VALUES ($1, $2)', [id, prefix])
    process.stdout.write(`ack ${id} ${Date.now()}\n`)
  } catch (err) {
    process.stdout.write(`err ${Date.now()} ${String(err.message).replace(/\s+/g, ' ')}\n`)
    await client?.end().catch(() => {})
    client = undefined
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}
