import type { DaemonProcess } from './cluster.js'

export type Spec = Record<string, any>

/** The body of a 200 answer, or an error that says what was asked and what came back. */
export async function ok<T = any> (p: Promise<{ status: number, body: T }>, what: string): Promise<T> {
  const res = await p
  if (res.status !== 200) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

/** GET the database's spec, edit it, POST it back through the same host. */
export async function updateSpec (d: DaemonProcess, id: string, edit: (spec: Spec) => void): Promise<void> {
  const current = await ok(d.get(`/v1/databases/${id}`), `get ${id}`)
  const spec = structuredClone(current.spec) as Spec
  edit(spec)
  await ok(d.post(`/v1/databases/${id}`, { spec }), `update ${id} on ${d.hostId}`)
}

/** The host's document heads, to tell when two hosts hold the same document. */
export async function heads (d: DaemonProcess): Promise<string> {
  return JSON.stringify((await d.get('/v1/cluster')).body.document.heads)
}
