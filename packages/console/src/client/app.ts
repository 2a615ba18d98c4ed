// The console's one script, run in the browser. It reads everything through the host's public v1 API (same
// authentication as any client) and re-renders the page it shows when the host's event stream says something moved.
// Plain DOM and template strings: every value put in markup goes through esc().

import { locateField } from './json-locate.js'

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any

const TOKEN_KEY = 'pgmesh.token'
const main = document.getElementById('main') as HTMLElement

class ApiFailure extends Error {
  constructor (readonly status: number, override readonly name: string, message: string) { super(message) }
}

function esc (value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, ch => `&#${ch.charCodeAt(0)};`)
}

function headers (json: boolean): Record<string, string> {
  const h: Record<string, string> = {}
  const token = sessionStorage.getItem(TOKEN_KEY)
  if (token !== null) h.authorization = `Bearer ${token}`
  if (json) h['content-type'] = 'application/json'
  return h
}

async function api (path: string, init: { method?: string, body?: unknown } = {}): Promise<Json> {
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers: headers(init.body !== undefined),
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) })
  })
  const text = await res.text()
  const body = text === '' ? undefined : JSON.parse(text)
  if (res.status === 401) { showLogin(body?.message); throw new ApiFailure(401, 'unauthorized', body?.message ?? 'unauthorized') }
  if (!res.ok) throw new ApiFailure(res.status, body?.name ?? 'error', body?.message ?? res.statusText)
  return body
}

function stateBadge (state: unknown): string {
  return `<span class="state-${esc(state)}">${esc(state ?? 'unknown')}</span>`
}

function bytes (n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : n < 1024 ** 3 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024 ** 3).toFixed(1)} GiB`
}

function ago (iso: string | undefined): string {
  if (iso === undefined) return ''
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  const text = seconds < 90 ? `${seconds} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`
  return `<time datetime="${esc(iso)}" title="${esc(iso)}">${text} ago</time>`
}

// ---- confirmation --------------------------------------------------------------------------------------------

async function confirmAction (title: string, text: string, extra = ''): Promise<HTMLFormElement | undefined> {
  const dialog = document.getElementById('confirm') as HTMLDialogElement
  ;(document.getElementById('confirm-title') as HTMLElement).textContent = title
  ;(document.getElementById('confirm-text') as HTMLElement).textContent = text
  ;(document.getElementById('confirm-extra') as HTMLElement).innerHTML = extra
  dialog.returnValue = ''
  dialog.showModal()
  ;(document.getElementById('confirm-ok') as HTMLButtonElement).focus()
  return await new Promise(resolve => {
    dialog.addEventListener('close', () => { resolve(dialog.returnValue === 'ok' ? dialog.querySelector('form') as HTMLFormElement : undefined) }, { once: true })
  })
}

// ---- login ----------------------------------------------------------------------------------------------------

let loginShown = false
function showLogin (message?: string): void {
  loginShown = true
  main.innerHTML = `<section class="login" aria-labelledby="login-title">
  <h1 id="login-title">Sign in to this host</h1>
  <p>This host asks for credentials. Paste an API token (<code>pgmesh token create --name me --role operator</code>);
  it is kept in this tab only (sessionStorage). Browsers with a client certificate of the cluster need none.</p>
  ${message === undefined || sessionStorage.getItem(TOKEN_KEY) === null ? '' : `<p class="state-failed" role="alert">${esc(message)}</p>`}
  <form id="login-form"><label for="token">API token</label>
  <input id="token" name="token" type="password" autocomplete="off" required>
  <button type="submit">Sign in</button></form></section>`
  const input = document.getElementById('token') as HTMLInputElement
  input.focus()
  ;(document.getElementById('login-form') as HTMLFormElement).addEventListener('submit', (e) => {
    e.preventDefault()
    sessionStorage.setItem(TOKEN_KEY, input.value.trim())
    loginShown = false
    startEvents()
    void render()
  })
}

// ---- live updates ---------------------------------------------------------------------------------------------

let thisHost: string | undefined
let eventsAbort: AbortController | undefined
const live = document.getElementById('live') as HTMLElement

/** One stream per tab: fetch rather than EventSource, so it can carry the bearer token like every other request. */
function startEvents (): void {
  eventsAbort?.abort()
  const abort = new AbortController()
  eventsAbort = abort
  void (async () => {
    for (let delay = 500; !abort.signal.aborted; delay = Math.min(delay * 2, 8000)) {
      try {
        const res = await fetch('/v1/events', { headers: headers(false), signal: abort.signal })
        if (res.status === 401) { showLogin(); return }
        if (!res.ok || res.body === null) throw new Error(String(res.status))
        live.textContent = 'live'
        delay = 500
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
        let buffer = ''
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          buffer += value
          let end: number
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            received(buffer.slice(0, end))
            buffer = buffer.slice(end + 2)
          }
        }
      } catch { /* reconnect below */ }
      if (abort.signal.aborted) return
      live.textContent = 'reconnecting…'
      await new Promise(resolve => setTimeout(resolve, delay))
    }
  })()
}

function received (block: string): void {
  let event = 'message'; let data = ''
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7)
    else if (line.startsWith('data: ')) data += line.slice(6)
  }
  if (event === 'hello') {
    thisHost = JSON.parse(data).host_id
    ;(document.getElementById('talking-to') as HTMLElement).innerHTML = `talking to <strong>${esc(thisHost)}</strong>`
    // The overview's banner depends on which host this is; a task page re-reads what the stream may have missed.
    scheduleRender()
  }
  if (event === 'task_log') taskLogArrived(JSON.parse(data))
  if (event === 'task') taskChanged(JSON.parse(data))
  // A task page shows one task, which its own events keep current.
  if (event === 'change' && shownTask() === undefined) scheduleRender()
}

let renderTimer: ReturnType<typeof setTimeout> | undefined
function scheduleRender (): void {
  if (renderTimer !== undefined || loginShown) return
  renderTimer = setTimeout(() => { renderTimer = undefined; void render() }, 100)
}

// ---- pages ----------------------------------------------------------------------------------------------------

/** Keeps what the user is typing or has selected: a re-render waits while a form on the page is being edited. */
function editing (): boolean {
  return main.querySelector('[data-dirty="true"]') !== null || (document.getElementById('confirm') as HTMLDialogElement).open
}

let rendering = false
/** A change arrived while a render was reading: render once more after it, or the page would miss the last change. */
let renderAgain: 'no' | 'change' | 'navigated' = 'no'
/** `navigated`: the user asked for another page, which replaces the one being edited. */
async function render (navigated = false): Promise<void> {
  if (!navigated && editing()) return
  if (rendering) { renderAgain = navigated ? 'navigated' : renderAgain === 'no' ? 'change' : renderAgain; return }
  rendering = true
  const route = location.hash.replace(/^#/, '') || '/'
  try {
    let m: RegExpMatchArray | null
    if (route === '/') await overview()
    else if (route === '/databases') await databases()
    else if ((m = /^\/databases\/([^/]+)\/tasks\/([^/]+)$/.exec(route)) !== null) await taskPage(decodeURIComponent(m[1] ?? ''), decodeURIComponent(m[2] ?? ''))
    else if ((m = /^\/databases\/([^/]+)$/.exec(route)) !== null) await databasePage(decodeURIComponent(m[1] ?? ''))
    else main.innerHTML = '<h1>Not found</h1><p><a href="#/">Back to the cluster</a></p>'
  } catch (err) {
    if (!(err instanceof ApiFailure && err.status === 401)) {
      main.innerHTML = `<h1>Something went wrong</h1><p role="alert">${esc((err as Error).message)}</p>`
    }
  } finally {
    rendering = false
    const again = renderAgain
    renderAgain = 'no'
    if (again === 'navigated') void render(true)
    else if (again === 'change') scheduleRender()
  }
}

/**
 * Swaps the page's content, keeping focus on the element of the same id (keyboard users keep their place), and a
 * comparison the user set up in the history (the versions picked, the difference shown): live updates re-render the
 * page while they read it.
 */
function paint (html: string): void {
  const focusedId = document.activeElement?.id
  const picked = main.querySelector('#history-form[data-picked="true"]') === null
    ? []
    : [...main.querySelectorAll<HTMLInputElement>('#history-form input[type="radio"]:checked')].map(input => ({ name: input.name, value: input.value }))
  const shown = document.getElementById('diff')?.innerHTML ?? ''
  main.innerHTML = html
  const inputs = [...main.querySelectorAll<HTMLInputElement>('#history-form input[type="radio"]')]
  for (const { name, value } of picked) {
    const input = inputs.find(i => i.name === name && i.value === value)
    if (input !== undefined) input.checked = true
  }
  if (picked.length > 0) (document.getElementById('history-form') as HTMLFormElement | null)?.setAttribute('data-picked', 'true')
  const diff = document.getElementById('diff')
  if (diff !== null && shown !== '') diff.innerHTML = shown
  if (focusedId !== undefined && focusedId !== '') document.getElementById(focusedId)?.focus()
}

/** Since when the host is in its state, as the host answering saw it change (`status.since`), and its last heartbeat. */
function healthSince (h: Json): string {
  const since: string | undefined = h.status?.since
  if (h.status?.updated_at === undefined) return since === undefined ? 'not heard from' : `not heard from since this host started ${ago(since)}`
  const last = `last heartbeat ${ago(h.status?.updated_at)}`
  return since === undefined ? last : `<span class="since">since ${ago(since)}</span> · ${last}`
}

async function overview (): Promise<void> {
  const [cluster, version] = await Promise.all([api('/v1/cluster'), api('/v1/version')])
  const hosts: Json[] = cluster.hosts ?? []
  const others = hosts.filter(h => h.id !== thisHost)
  // Cut off: no other host is heard from (never heard since this host started counts too).
  const cutOff = thisHost !== undefined && others.length > 0 && others.every(h => h.status?.state !== 'healthy' && h.status?.state !== 'degraded')
  const banner = document.getElementById('banner') as HTMLElement
  banner.hidden = !cutOff
  banner.textContent = cutOff ? `${thisHost ?? 'This host'} is cut off from the other hosts: writes here will merge when the hosts meet again.` : ''
  const rows = hosts.map(h => {
    const components = Object.entries(h.status?.components ?? {}).map(([name, c]: [string, Json]) => `${esc(name)}: ${c.healthy === false ? '<span class="state-failed">unhealthy</span>' : 'ok'}${c.details?.connected_peers !== undefined ? ` (${esc(c.details.connected_peers)} ${c.details.connected_peers === 1 ? 'peer' : 'peers'} connected)` : ''}${c.error !== undefined ? ` <span class="state-failed">${esc(c.error)}</span>` : ''}`).join(', ')
    return `<tr data-host="${esc(h.id)}"><th scope="row">${esc(h.id)}${h.id === thisHost ? ' <span class="muted">(this host)</span>' : ''}</th>
    <td class="host-state">${stateBadge(h.status?.state)} <span class="muted">${healthSince(h)}</span></td>
    <td>${esc(h.orchestrator)}</td><td>${esc(h.version)}</td><td><code>${esc(h.api_url)}</code></td>
    <td>${(h.peer_addresses ?? []).map((a: string) => `<code>${esc(a)}</code>`).join('<br>')}</td><td>${components}</td></tr>`
  }).join('')
  paint(`<h1>Cluster <code>${esc(cluster.id)}</code> ${stateBadge(cluster.status?.state)}</h1>
  <p class="muted">pgmesh ${esc(version.version)} · ${hosts.length} hosts · no leader: every host answers and accepts writes</p>
  <table aria-label="Hosts"><thead><tr><th scope="col">Host</th><th scope="col">Health</th><th scope="col">Orchestrator</th><th scope="col">Version</th><th scope="col">API</th><th scope="col">Mesh addresses</th><th scope="col">Components</th></tr></thead>
  <tbody>${rows}</tbody></table>`)
}

async function databases (): Promise<void> {
  const { databases: list } = await api('/v1/databases')
  const rows = (list as Json[]).map(d => `<tr data-database="${esc(d.id)}"><th scope="row"><a href="#/databases/${encodeURIComponent(d.id)}">${esc(d.id)}</a></th>
    <td>${stateBadge(d.state)}</td><td>${(d.instances ?? []).length}</td><td>${ago(d.updated_at)}</td></tr>`).join('')
  paint(`<h1>Databases</h1>${rows === '' ? '<p>No databases yet.</p>' : `<table aria-label="Databases"><thead><tr><th scope="col">Database</th><th scope="col">State</th><th scope="col">Instances</th><th scope="col">Updated</th></tr></thead><tbody>${rows}</tbody></table>`}`)
}

function role (instance: Json): string {
  return String(instance.postgres?.role ?? (instance.state === 'available' ? 'instance' : '—'))
}

function nodesPicture (db: Json): string {
  const nodes: Json[] = db.spec?.nodes ?? []
  return `<div class="nodes">${nodes.map(node => {
    const instances = (db.instances as Json[] ?? []).filter(i => i.node_name === node.name)
      .sort((a, b) => (role(a) === 'primary' ? 0 : 1) - (role(b) === 'primary' ? 0 : 1))
    const subs = instances.flatMap(i => (i.spock?.subscriptions ?? []).map((s: Json) => ({ ...s, on: i.id })))
    const replicas = instances.filter(i => role(i) !== 'primary')
    return `<section class="node" aria-label="Node ${esc(node.name)}" data-node="${esc(node.name)}"><h3>Node ${esc(node.name)}</h3>
    ${instances.map(i => `<div class="inst ${esc(role(i))}" data-instance="${esc(i.id)}" data-role="${esc(role(i))}" data-host="${esc(i.host_id)}">
      <span class="role">${esc(role(i))}</span> on <strong>${esc(i.host_id)}</strong> ${stateBadge(i.state)}<br>
      <code>${esc(i.id)}</code>${i.error !== undefined ? `<br><span class="state-failed">${esc(i.error)}</span>` : ''}
      <div class="actions">
        <button data-action="restart" data-instance="${esc(i.id)}">Restart</button>
        ${i.state === 'stopped' ? `<button data-action="start" data-instance="${esc(i.id)}">Start</button>` : `<button data-action="stop" data-instance="${esc(i.id)}" class="danger">Stop</button>`}
      </div></div>`).join('')}
    ${subs.length === 0 ? '' : `<p><strong>Subscriptions</strong></p><ul>${subs.map(s => `<li>from <strong>${esc(s.provider_node)}</strong>: ${stateBadge(s.status)}${s.failing_since !== undefined ? ` failing since ${ago(s.failing_since)}` : ''}${s.lag_bytes !== undefined ? ` <span class="lag" title="bytes of ${esc(s.provider_node)}'s WAL not yet confirmed by this node">lag ${esc(bytes(s.lag_bytes))}</span>` : ''}${s.error !== undefined ? ` <span class="state-failed">${esc(s.error)}</span>` : ''}</li>`).join('')}</ul>`}
    <div class="actions">
      <button data-action="switchover" data-node="${esc(node.name)}" ${replicas.length === 0 ? 'disabled' : ''}>Switchover…</button>
      <button data-action="failover" data-node="${esc(node.name)}" class="danger" ${replicas.length === 0 ? 'disabled' : ''}>Failover…</button>
      <button data-action="backup" data-node="${esc(node.name)}">Back up now</button>
    </div></section>`
  }).join('')}</div>`
}

function connectionStrings (db: Json): string {
  const users: Json[] = db.spec?.database_users ?? []
  const user = users.find(u => u.db_owner === true)?.username ?? users[0]?.username ?? 'postgres'
  const lines = (db.instances as Json[] ?? []).filter(i => i.connection_info !== undefined).map(i => {
    const host = i.connection_info.addresses?.[0] ?? 'localhost'
    const url = `postgresql://${encodeURIComponent(user)}@${host}:${i.connection_info.port}/${encodeURIComponent(db.spec?.database_name ?? '')}`
    return `<li><span class="muted">${esc(i.node_name)} ${esc(role(i))} (${esc(i.host_id)})</span> <code>${esc(url)}</code> <button data-copy="${esc(url)}" aria-label="Copy connection string of ${esc(i.id)}">Copy</button></li>`
  })
  return lines.length === 0 ? '<p class="muted">No instance reports an address yet.</p>' : `<ul>${lines.join('')}</ul>`
}

function conflictsView (db: Json): string {
  const conflicts: Json[] = db.conflicts ?? []
  if (conflicts.length === 0) return '<p class="muted">No conflicts.</p>'
  return conflicts.map((c, ci) => `<div class="conflict" data-conflict="${esc(c.path)}"><p>Field <code>${esc(c.path === '' ? '(the whole database)' : c.path)}</code> was written differently by ${(c.hosts as string[]).map(h => `<strong>${esc(h)}</strong>`).join(' and ')} while they were apart.</p>
  <ul>${(c.values as unknown[]).map((v, vi) => `<li><code>${esc(JSON.stringify(v))}</code> <span class="muted">${vi === 0 ? '(in effect now)' : ''}</span> ${c.path.startsWith('spec.') ? `<button data-keep="${ci}:${vi}">Keep this value</button>` : ''}</li>`).join('')}</ul></div>`).join('')
}

function tasksView (id: string, tasks: Json[]): string {
  if (tasks.length === 0) return '<p class="muted">No tasks.</p>'
  return `<table aria-label="Tasks"><thead><tr><th scope="col">Task</th><th scope="col">Status</th><th scope="col">Created</th></tr></thead><tbody>${tasks.slice(0, 15).map(t =>
    `<tr><td><a href="#/databases/${encodeURIComponent(id)}/tasks/${encodeURIComponent(t.task_id)}">${esc(t.type)}${t.node_name !== undefined ? ` ${esc(t.node_name)}` : ''}</a></td><td>${stateBadge(t.status)}</td><td>${ago(t.created_at)}</td></tr>`).join('')}</tbody></table>`
}

function historyView (changes: Json[]): string {
  const recent = changes.slice(-20).reverse()
  return `<form id="history-form" aria-label="Compare two versions"><table aria-label="History"><thead><tr><th scope="col">From</th><th scope="col">To</th><th scope="col">When</th><th scope="col">Host</th><th scope="col">Change</th></tr></thead><tbody>
  ${recent.map((c, i) => `<tr><td><input type="radio" name="from" value="${esc(c.version)}" aria-label="compare from ${esc(c.time)}" ${i === 1 ? 'checked' : ''}></td>
  <td><input type="radio" name="to" value="${esc(c.version)}" aria-label="compare to ${esc(c.time)}" ${i === 0 ? 'checked' : ''}></td>
  <td>${ago(c.time)}</td><td>${esc(c.host_id)}</td><td>${esc(c.operation)}</td></tr>`).join('')}</tbody></table>
  <button type="submit">Show the difference</button></form><div id="diff" aria-live="polite"></div>`
}

const openDatabases = new Map<string, string>()

async function databasePage (id: string): Promise<void> {
  const [db, { tasks }, history] = await Promise.all([
    api(`/v1/databases/${encodeURIComponent(id)}`),
    api(`/v1/databases/${encodeURIComponent(id)}/tasks?limit=15`),
    api(`/v1/databases/${encodeURIComponent(id)}/history`)
  ])
  const specText = JSON.stringify(db.spec, null, 2)
  openDatabases.set(id, specText)
  paint(`<p><a href="#/databases">Databases</a> /</p><h1>${esc(db.id)} ${stateBadge(db.state)}</h1>
  ${(db.spec_errors ?? []).length > 0 ? `<p role="alert" class="state-failed">The merged spec is not valid: ${esc((db.spec_errors as string[]).join('; '))}</p>` : ''}
  <div class="actions"><button data-action="delete" class="danger">Delete database…</button></div>
  <h2>Nodes and instances</h2>${nodesPicture(db)}
  <h2>Connection strings</h2>${connectionStrings(db)}
  <h2>Conflicts</h2><div id="conflicts">${conflictsView(db)}</div>
  <div class="cols"><section aria-labelledby="spec-title"><h2 id="spec-title">Spec</h2>
  <form id="spec-form"><label for="spec-text" class="muted">Edit the spec (JSON) and save: the API validates it; each problem is marked at its line and its button selects the field. Passwords are write-only and not shown.</label>
  <div class="editor"><pre id="spec-gutter" class="gutter" aria-hidden="true"></pre><textarea id="spec-text" wrap="off" spellcheck="false" aria-describedby="spec-errors">${esc(specText)}</textarea></div>
  <ul id="spec-errors" class="field-errors" aria-live="assertive"></ul>
  <button type="submit">Save spec</button> <button type="button" id="spec-reset">Discard changes</button></form></section>
  <section aria-labelledby="tasks-title"><h2 id="tasks-title">Tasks</h2>${tasksView(id, tasks)}</section></div>
  <h2>History</h2>${historyView(history.changes ?? [])}`)
  wireDatabasePage(db)
}

function wireDatabasePage (db: Json): void {
  const id: string = db.id
  const base = `/v1/databases/${encodeURIComponent(id)}`
  const goToTask = (task: Json): void => { location.hash = `#/databases/${encodeURIComponent(id)}/tasks/${encodeURIComponent(task.task_id)}` }
  const failed = (err: unknown): void => { alert((err as Error).message) }
  main.querySelectorAll<HTMLButtonElement>('button[data-action]').forEach(button => {
    button.addEventListener('click', () => {
      void (async () => {
        const action = button.dataset.action as string
        const node = button.dataset.node ?? ''
        const instance = button.dataset.instance ?? ''
        try {
          if (action === 'delete') {
            if (await confirmAction(`Delete ${id}?`, 'Every instance of this database is removed on every host, with its data.') === undefined) return
            goToTask((await api(base, { method: 'DELETE' })).task)
          } else if (action === 'switchover' || action === 'failover') {
            const candidates = (db.instances as Json[]).filter(i => i.node_name === node && role(i) !== 'primary')
            const form = await confirmAction(`${action === 'switchover' ? 'Switchover' : 'Failover'} of node ${node}?`,
              action === 'switchover' ? 'The primary hands over to a replica; clients reconnect.' : 'A replica is promoted without waiting for the primary; use when the primary is lost.',
              `<label for="candidate">New primary</label> <select id="candidate" name="candidate">${candidates.map(c => `<option value="${esc(c.id)}">${esc(c.id)} on ${esc(c.host_id)}</option>`).join('')}</select>`)
            if (form === undefined) return
            const candidate = (form.querySelector('#candidate') as HTMLSelectElement).value
            goToTask((await api(`${base}/nodes/${encodeURIComponent(node)}/${action}`, { method: 'POST', body: { candidate_instance_id: candidate } })).task)
          } else if (action === 'backup') {
            if (await confirmAction(`Back up node ${node} now?`, 'A full pgBackRest backup runs on the node\'s primary.') === undefined) return
            goToTask((await api(`${base}/nodes/${encodeURIComponent(node)}/backups`, { method: 'POST', body: { type: 'full' } })).task)
          } else {
            const path = action === 'restart' ? 'restart' : `${action}-instance`
            if (await confirmAction(`${action[0]?.toUpperCase() ?? ''}${action.slice(1)} ${instance}?`, action === 'stop' ? 'The instance stops serving until it is started again.' : 'Connections to it are dropped.') === undefined) return
            goToTask((await api(`${base}/instances/${encodeURIComponent(instance)}/${path}`, { method: 'POST' })).task)
          }
        } catch (err) { failed(err) }
      })()
    })
  })
  main.querySelectorAll<HTMLButtonElement>('button[data-copy]').forEach(b => b.addEventListener('click', () => {
    void navigator.clipboard?.writeText(b.dataset.copy ?? '').then(() => { b.textContent = 'Copied' }, () => { b.textContent = 'Copy failed' })
  }))
  main.querySelectorAll<HTMLButtonElement>('button[data-keep]').forEach(b => b.addEventListener('click', () => {
    void (async () => {
      const [ci, vi] = (b.dataset.keep ?? '').split(':').map(Number) as [number, number]
      const conflict = db.conflicts[ci]
      const value = conflict.values[vi]
      if (await confirmAction('Keep this value?', `${conflict.path} becomes ${JSON.stringify(value)} on every host.`) === undefined) return
      const spec = structuredClone(db.spec)
      setPath(spec, conflict.path.replace(/^spec\./, ''), value)
      try { await api(base, { method: 'POST', body: { spec } }); await render() } catch (err) { failed(err) }
    })()
  }))
  const form = document.getElementById('spec-form') as HTMLFormElement
  const text = document.getElementById('spec-text') as HTMLTextAreaElement
  const errors = document.getElementById('spec-errors') as HTMLElement
  const gutter = document.getElementById('spec-gutter') as HTMLElement
  /** The API's problems of the last save: `path` when the message names a field. */
  let problems: Array<{ path?: string, message: string, line?: number, offset?: number }> = []
  const markProblems = (): void => {
    for (const p of problems) if (p.path !== undefined) p.line = locateField(text.value, p.path)?.line
    paintGutter(text, gutter, new Set(problems.flatMap(p => p.line === undefined ? [] : [p.line])))
    if (problems.length > 0) text.setAttribute('aria-invalid', 'true')
    else text.removeAttribute('aria-invalid')
  }
  const showProblems = (): void => {
    markProblems()
    errors.innerHTML = problems.map((p, k) => p.path === undefined
      ? `<li>${p.line === undefined ? '' : `<button type="button" class="goto" data-problem="${k}">line ${p.line}</button> `}${esc(p.message)}</li>`
      : `<li data-path="${esc(p.path)}">${p.line === undefined ? '' : `<button type="button" class="goto" data-problem="${k}" aria-label="Select ${esc(p.path)} at line ${p.line}">line ${p.line}</button> `}<code>${esc(p.path)}</code>: ${esc(p.message)}</li>`).join('')
    errors.querySelectorAll<HTMLButtonElement>('button.goto').forEach(b => b.addEventListener('click', () => {
      const p = problems[Number(b.dataset.problem)]
      if (p !== undefined) selectProblem(text, p)
    }))
  }
  paintGutter(text, gutter, new Set())
  text.addEventListener('scroll', () => { gutter.scrollTop = text.scrollTop })
  text.addEventListener('input', () => { form.dataset.dirty = 'true'; markProblems() })
  ;(document.getElementById('spec-reset') as HTMLButtonElement).addEventListener('click', () => { delete form.dataset.dirty; void render() })
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    void (async () => {
      problems = []
      showProblems()
      let spec: unknown
      try { spec = JSON.parse(text.value) } catch (err) {
        // Browsers name where the text stopped being JSON: that line is marked.
        const message = (err as Error).message
        const at = /position (\d+)/.exec(message)
        problems = [{ message: `not JSON: ${message}`, ...(at === null ? {} : { line: text.value.slice(0, Number(at[1])).split('\n').length, offset: Number(at[1]) }) }]
        paintGutter(text, gutter, new Set(problems.flatMap(p => p.line === undefined ? [] : [p.line])))
        errors.innerHTML = `<li>${problems[0]?.line === undefined ? '' : `<button type="button" class="goto" data-line="${problems[0].line}">line ${problems[0].line}</button> `}${esc(message)}</li>`
        errors.querySelector<HTMLButtonElement>('button.goto')?.addEventListener('click', () => { selectProblem(text, problems[0] ?? { message: '' }) })
        text.setAttribute('aria-invalid', 'true')
        return
      }
      try {
        const res = await api(base, { method: 'POST', body: { spec } })
        delete form.dataset.dirty
        goToTask(res.task)
      } catch (err) {
        // The API words each problem as `path: message`, one a line; each path is found in the text.
        problems = (err as Error).message.split('\n').map(line => {
          const m = /^([^\s:]+): (.*)$/.exec(line)
          return m === null ? { message: line } : { path: m[1] ?? '', message: m[2] ?? '' }
        })
        showProblems()
        const first = problems.find(p => p.line !== undefined)
        if (first !== undefined) selectProblem(text, first)
        else text.focus()
      }
    })()
  })
  const history = document.getElementById('history-form') as HTMLFormElement | null
  history?.addEventListener('change', () => { history.dataset.picked = 'true' })
  history?.addEventListener('submit', (e) => {
    e.preventDefault()
    void (async () => {
      const data = new FormData(history)
      // Looked up once the answer is in: a live update may have re-rendered the page (a new #diff) meanwhile.
      const show = (html: string): void => { const diff = document.getElementById('diff'); if (diff !== null) diff.innerHTML = html }
      try {
        const res = await api(`${base}/history?from=${encodeURIComponent(String(data.get('from') ?? ''))}&to=${encodeURIComponent(String(data.get('to') ?? ''))}`)
        const entries: Json[] = res.diff ?? []
        show(entries.length === 0 ? '<p>No difference.</p>' : `<table aria-label="Difference"><thead><tr><th scope="col">Field</th><th scope="col">Change</th><th scope="col">Before</th><th scope="col">After</th></tr></thead><tbody>${entries.map(d =>
          `<tr><td><code>${esc(d.path)}</code></td><td>${esc(d.action)}</td><td class="diff-remove"><code>${esc(JSON.stringify(d.before))}</code></td><td class="diff-add"><code>${esc(JSON.stringify(d.after))}</code></td></tr>`).join('')}</tbody></table>`)
      } catch (err) { show(`<p role="alert">${esc((err as Error).message)}</p>`) }
    })()
  })
}

/** Line numbers beside the spec editor, the lines with a problem marked. */
function paintGutter (text: HTMLTextAreaElement, gutter: HTMLElement, marked: ReadonlySet<number>): void {
  const count = text.value.split('\n').length
  gutter.innerHTML = Array.from({ length: count }, (_, i) => marked.has(i + 1) ? `<mark data-line="${i + 1}">${i + 1}</mark>` : String(i + 1)).join('\n')
  gutter.scrollTop = text.scrollTop
}

/** Puts the cursor on the problem's field (selected) and scrolls the editor to it. */
function selectProblem (text: HTMLTextAreaElement, problem: { path?: string, line?: number, offset?: number }): void {
  const found = problem.path === undefined ? undefined : locateField(text.value, problem.path)
  const start = found?.start ?? problem.offset ?? 0
  const end = found?.end ?? start
  text.focus()
  text.setSelectionRange(start, end)
  const line = found?.line ?? problem.line ?? 1
  const lineHeight = Number.parseFloat(getComputedStyle(text).lineHeight) || 17
  text.scrollTop = Math.max(0, (line - 4) * lineHeight)
}

/** Sets `a.b[2].c` in a spec; node and user lists are addressed by index, as the API's paths are. */
function setPath (target: Json, path: string, value: unknown): void {
  const keys = path.replace(/\[(\d+)\]/g, '.$1').split('.').filter(k => k !== '')
  let at = target
  for (const key of keys.slice(0, -1)) {
    at[key] ??= {}
    at = at[key]
  }
  const last = keys.at(-1)
  if (last !== undefined) at[last] = value
}

/** The task the page shows: its record, the log as last read, and the entries the stream pushed since. */
interface FollowedTask {
  databaseId: string
  taskId: string
  task?: Json
  /** The log as GET returned it (every host's entries up to `readUpTo`). */
  read: Json[]
  readUpTo?: string
  /** Entries pushed by the stream (`task_log`), by id; those past `readUpTo` are shown after the read ones. */
  pushed: Map<string, Json>
}

let followed: FollowedTask | undefined
const ACTIVE = ['pending', 'running', 'canceling']

function shownTask (): string | undefined {
  const m = /^#\/databases\/[^/]+\/tasks\/([^/]+)$/.exec(location.hash)
  return m === null ? undefined : decodeURIComponent(m[1] ?? '')
}

function taskBase (f: FollowedTask): string {
  return `/v1/databases/${encodeURIComponent(f.databaseId)}/tasks/${encodeURIComponent(f.taskId)}`
}

async function readTaskLog (f: FollowedTask): Promise<void> {
  const page = await api(`${taskBase(f)}/log`)
  f.read = page.entries ?? []
  f.readUpTo = page.last_entry_id
}

async function taskPage (id: string, taskId: string): Promise<void> {
  // Followed before the reads, so entries pushed while they run are kept.
  const f: FollowedTask = { databaseId: id, taskId, read: [], pushed: followed?.taskId === taskId ? followed.pushed : new Map() }
  followed = f
  const [task] = await Promise.all([api(taskBase(f)), readTaskLog(f)])
  f.task = task
  paint(`<p><a href="#/databases">Databases</a> / <a href="#/databases/${encodeURIComponent(id)}">${esc(id)}</a> /</p>
  <h1>Task ${esc(task.type)} <span id="task-status" aria-live="polite"></span></h1>
  <p class="muted" id="task-meta"></p><div id="task-error"></div>
  <div class="actions"><button id="cancel-task" class="danger">Cancel task…</button></div>
  <h2>Log</h2><pre class="log" id="task-log" tabindex="0" aria-live="polite" aria-label="Task log"></pre>`)
  paintTask(f)
  paintTaskLog(f, true)
  ;(document.getElementById('cancel-task') as HTMLButtonElement).addEventListener('click', () => {
    void (async () => {
      if (await confirmAction('Cancel this task?', 'The task stops at its next step; what it did stays done.') === undefined) return
      try { await api(`${taskBase(f)}/cancel`); await render() } catch (err) { alert((err as Error).message) }
    })()
  })
}

/** The task's status, times, error and whether it can be canceled: what a `task` event changes. */
function paintTask (f: FollowedTask): void {
  const task = f.task
  const status = document.getElementById('task-status')
  if (status === null || task === undefined) return
  status.innerHTML = stateBadge(task.status)
  ;(document.getElementById('task-meta') as HTMLElement).innerHTML = `${esc(task.task_id)} · created ${ago(task.created_at)}${task.completed_at !== undefined ? ` · ended ${ago(task.completed_at)}` : ''}`
  ;(document.getElementById('task-error') as HTMLElement).innerHTML = task.error !== undefined ? `<p role="alert" class="state-failed">${esc(task.error)}</p>` : ''
  ;(document.getElementById('cancel-task') as HTMLButtonElement).disabled = !ACTIVE.includes(task.status)
}

function paintTaskLog (f: FollowedTask, scrollToEnd = false): void {
  const pre = document.getElementById('task-log')
  if (pre === null) return
  const atEnd = scrollToEnd || pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4
  const upTo = f.readUpTo
  const pushed = [...f.pushed.values()].filter(e => upTo === undefined || e.id > upTo).sort((a, b) => String(a.id).localeCompare(String(b.id)))
  pre.innerHTML = [...f.read, ...pushed].map(e => `${esc(e.timestamp)} ${esc(e.fields?.host_id ?? '')}  ${esc(e.message)}`).join('\n')
  if (atEnd) pre.scrollTop = pre.scrollHeight
}

/** `task_log`: new entries of a task, from any host, as they are written. */
function taskLogArrived (event: { task_id: string, entries: Json[] }): void {
  const f = followed
  if (f === undefined || f.taskId !== event.task_id) return
  for (const entry of event.entries) f.pushed.set(entry.id, entry)
  if (shownTask() === f.taskId) paintTaskLog(f)
}

/** `task`: a task whose status changed. Once it ended, its log is read whole (gossip may have dropped an entry). */
function taskChanged (task: Json): void {
  const f = followed
  if (f === undefined || f.taskId !== task.task_id || shownTask() !== f.taskId) return
  f.task = task
  if (ACTIVE.includes(task.status)) { paintTask(f); return }
  // Ended: the status shows with the log read whole, so the page does not say "completed" above a log that stops short.
  void readTaskLog(f).catch(() => {}).finally(() => { paintTask(f); paintTaskLog(f) })
}

window.addEventListener('hashchange', () => { void render(true).then(() => { main.focus({ preventScroll: true }) }) })
startEvents()
void render()
