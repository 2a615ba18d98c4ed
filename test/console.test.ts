// The web console (issue 15) in a real browser (Debian's chromium driven by playwright-core) against real daemons:
// the overview lists the hosts with since when they are in their state and shows a killed one unreachable, a
// database created through the API appears and its create task's log streams in (pushed, every host's entries), the
// picture shows subscription lag, the spec editor points validation messages at their fields, a switchover started
// from the page moves the primary, and a conflict made by a partition shows both values and is resolved from the
// page. Screenshots go to test-results/console/.
import { mkdir, readFile } from 'node:fs/promises'
import { request } from 'node:https'
import { join } from 'node:path'
import { type Browser, type Page, chromium } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until, untilEveryHostKnowsEvery } from './helpers/cluster.js'
import { heads, ok, updateSpec } from './helpers/specs.js'

const SHOTS = join(process.cwd(), 'test-results', 'console')

async function launch (): Promise<Browser> {
  return await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run']
  })
}

async function shot (page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true })
}

describe('the web console with real databases', () => {
  let cluster: TestCluster | undefined
  let h1: DaemonProcess, h3: DaemonProcess
  let browser: Browser
  let page: Page

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true })
    cluster = await TestCluster.create('console')
    // host-3 runs no instances: it only has to be a member that can be killed.
    ;[h1, , h3] = await cluster.initAndJoin(3, i => i === 3 ? { reconcile: false } : {}) as [DaemonProcess, DaemonProcess, DaemonProcess]
    await untilEveryHostKnowsEvery(cluster.daemons)
    browser = await launch()
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  }, 120_000)

  afterEach((context) => {
    if (context.task.result?.state === 'fail') console.log(cluster?.problems())
  })

  afterAll(async () => {
    await browser?.close()
    await cluster?.destroy()
  })

  it('paints the overview with three healthy hosts, fast and small', async () => {
    const started = Date.now()
    await page.goto(`${h1.url}/ui#/`)
    await page.locator('tr[data-host] .host-state .state-healthy').nth(2).waitFor({ timeout: 10_000 })
    const hostsShown = Date.now() - started
    // Read the paint entry through a buffered observer: on a loaded machine it is recorded after the load event,
    // and an entry looked up by name at that moment is not there yet.
    const firstPaint = await page.evaluate(async () => await new Promise<number | undefined>(resolve => {
      const timer = setTimeout(() => resolve(undefined), 10_000)
      new PerformanceObserver((list, observer) => {
        const entry = list.getEntriesByName('first-contentful-paint')[0]
        if (entry === undefined) return
        clearTimeout(timer)
        observer.disconnect()
        resolve(entry.startTime)
        // Node's types for PerformanceObserver are in scope here, and they do not know the browser's 'paint' entries.
      }).observe({ type: 'paint' as 'mark', buffered: true })
    }))
    expect(await page.locator('tr[data-host]').count()).toBe(3)
    expect(await page.locator('tr[data-host] .state-healthy').count()).toBe(3)
    await expect.poll(async () => await page.locator('#talking-to').textContent()).toBe('talking to host-1')
    expect(await page.locator('#banner').isHidden()).toBe(true)
    // Since when: the time host-1 saw host-2 become healthy (before this page opened), not when the page saw it.
    const hosts = await ok(h1.get('/v1/hosts'), 'hosts')
    const since2: string = hosts.hosts.find((h: { id: string }) => h.id === 'host-2').status.since
    expect(Date.parse(since2)).toBeLessThan(started)
    await expect.poll(async () => await page.locator('tr[data-host="host-2"] .since time').getAttribute('datetime')).toBe(since2)

    const sizes = await h1.request('GET', '/ui')
    expect(sizes.status).toBe(200)
    const compressed = await Promise.all(['/ui', '/ui/app.js', '/ui/json-locate.js', '/ui/app.css'].map(async path => {
      const res = await fetch(`${h1.url}${path}`, { headers: { 'accept-encoding': 'gzip' } })
      expect(res.headers.get('content-encoding')).toBe('gzip')
      return Number(res.headers.get('content-length') ?? (await res.arrayBuffer()).byteLength)
    }))
    const total = compressed.reduce((a, b) => a + b, 0)
    console.log(`console: first contentful paint ${firstPaint?.toFixed(0) ?? '?'} ms, three hosts shown after ${hostsShown} ms, ${total} bytes compressed (${compressed.join(' + ')})`)
    // The target is < 1 s (150-340 ms on a quiet 2-core machine); the bound leaves room for a loaded one (860 ms at load 15).
    expect(firstPaint).toBeLessThan(1500)
    expect(total).toBeLessThan(300 * 1024)
    // GET / is still the anchor's.
    const root = await h1.get('/')
    expect(root.status).toBe(204)
    await shot(page, 'overview')
  })

  it('shows a killed host unreachable within seconds', async () => {
    await h3.stop('SIGKILL')
    const killed = Date.now()
    await page.locator('tr[data-host="host-3"] .state-unreachable').waitFor({ timeout: 15_000 })
    console.log(`console: host-3 shown unreachable ${Date.now() - killed} ms after SIGKILL`)
    expect(await page.locator('tr[data-host="host-1"] .state-healthy').count()).toBe(1)
    // Unreachable since the heartbeat timeout (4 s) ran out after its last heartbeat (sent every second, so up to
    // about 1 s before the kill), to the whole second the API's times carry.
    const shown = Date.parse(await page.locator('tr[data-host="host-3"] .since time').getAttribute('datetime') ?? '')
    expect(shown).toBeGreaterThan(killed + 1000)
    expect(shown).toBeLessThanOrEqual(killed + 4000)
    await shot(page, 'overview-host-down')
  })

  it('lists a database created through the API and streams its create task\'s log', async () => {
    await page.goto(`${h1.url}/ui#/databases`)
    await page.getByText('No databases yet.').waitFor()
    // What the stream carries, read beside the browser: every host's entries, pushed.
    const stream = await fetch(`${h1.url}/v1/events`)
    const streamed: string[] = []
    void (async () => {
      const reader = (stream.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader()
      for (;;) { const { value, done } = await reader.read(); if (done) return; streamed.push(value) }
    })().catch(() => {})
    const created = await ok(h1.post('/v1/databases', {
      id: 'app',
      spec: {
        database_name: 'app',
        database_users: [{ username: 'admin', password: 'secret', db_owner: true, attributes: ['LOGIN'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-2'] }]
      }
    }), 'create app')
    const taskId = String(created.task.task_id)
    // No reload: the event stream brings it.
    await page.locator('tr[data-database="app"]').waitFor({ timeout: 5000 })
    const logReads: string[] = []
    page.on('request', (r) => { if (r.url().endsWith(`/tasks/${taskId}/log`)) logReads.push(r.url()) })
    await page.goto(`${h1.url}/ui#/databases/app/tasks/${taskId}`)
    const log = page.locator('#task-log')
    await expect.poll(async () => await log.textContent(), { timeout: 20_000 }).toContain('task created')
    const early = (await log.textContent()) ?? ''
    await page.locator('#task-status .state-completed').waitFor({ timeout: 150_000 })
    // The settling host writes its closing entry just after the status (the stream pushes it if the read missed it).
    await expect.poll(async () => await log.textContent(), { timeout: 5000 }).toContain('task completed')
    const done = (await log.textContent()) ?? ''
    expect(done.length).toBeGreaterThan(early.length)
    expect(done).toMatch(/host-2 {2}creating instance app-n1-/)
    expect(done).toContain('task completed')
    expect(done).not.toContain('secret')
    // Pushed, not polled: the page read the log when it opened and once more when the task ended (gossip may drop an
    // entry), however long the task ran (it polled every second before).
    expect(logReads.length).toBeLessThanOrEqual(2)
    const pushed = streamed.join('').split('\n\n').filter(b => b.startsWith('event: task_log\n'))
      .map(b => JSON.parse(b.slice(b.indexOf('data: ') + 6)) as { task_id: string, entries: Array<{ message: string, fields: { host_id: string } }> })
      .filter(e => e.task_id === taskId).flatMap(e => e.entries)
    console.log(`console: create task took ${logReads.length} log reads; the stream pushed ${pushed.length} entries (${[...new Set(pushed.map(e => e.fields.host_id))].join(', ')})`)
    expect(pushed.some(e => e.fields.host_id === 'host-2' && e.message.startsWith('creating instance'))).toBe(true)
    expect(pushed.some(e => e.fields.host_id === 'host-1')).toBe(true)
    await stream.body?.cancel().catch(() => {})
    await shot(page, 'task')
  }, 180_000)

  it('shows each subscription\'s lag in the picture', async () => {
    await page.goto(`${h1.url}/ui#/databases/app`)
    const lag = page.locator('.node[data-node="n2"] .lag')
    await lag.waitFor({ timeout: 30_000 })
    expect(await lag.textContent()).toMatch(/^lag \d+(\.\d)? (B|KiB|MiB)$/)
    const db = await ok(h1.get('/v1/databases/app'), 'get app')
    const subscription = db.instances.find((i: { node_name: string, postgres?: { role?: string } }) => i.node_name === 'n2').spock.subscriptions[0]
    expect(subscription).toMatchObject({ provider_node: 'n1', name: 'sub_n1_n2', status: 'replicating' })
    expect(subscription.lag_bytes).toBeGreaterThanOrEqual(0)
  }, 60_000)

  it('points each validation message at its field in the spec editor', async () => {
    await page.goto(`${h1.url}/ui#/databases/app`)
    const editor = page.locator('#spec-text')
    await editor.waitFor()
    const spec = JSON.parse(await editor.inputValue())
    spec.nodes[0].host_ids[1] = 'Bad Host!'
    const text = JSON.stringify(spec, null, 2)
    await editor.fill(text)
    await page.getByRole('button', { name: 'Save spec' }).click()
    const problem = page.locator('#spec-errors li[data-path="nodes[0].host_ids[1]"]')
    await problem.waitFor({ timeout: 10_000 })
    const line = text.slice(0, text.indexOf('"Bad Host!"')).split('\n').length
    expect(await problem.getByRole('button').textContent()).toBe(`line ${line}`)
    expect(await page.locator('#spec-gutter mark').evaluateAll(marks => marks.map(m => m.getAttribute('data-line')))).toEqual([String(line)])
    expect(await editor.getAttribute('aria-invalid')).toBe('true')
    type TextArea = { value: string, selectionStart: number, selectionEnd: number, setSelectionRange: (a: number, b: number) => void }
    const selected = async (): Promise<string> => await editor.evaluate(e => { const t = e as unknown as TextArea; return t.value.slice(t.selectionStart, t.selectionEnd) })
    // The first problem's field is selected at once; its button selects it again from the keyboard.
    expect(await selected()).toBe('"Bad Host!"')
    await editor.evaluate(e => { (e as unknown as TextArea).setSelectionRange(0, 0) })
    await problem.getByRole('button').focus()
    await page.keyboard.press('Enter')
    expect(await selected()).toBe('"Bad Host!"')
    await shot(page, 'spec-errors')
    await page.getByRole('button', { name: 'Discard changes' }).click()
    await expect.poll(async () => await page.locator('#spec-errors li').count()).toBe(0)
  }, 60_000)

  it('switches over from the page and shows the new primary', async () => {
    await page.goto(`${h1.url}/ui#/databases/app`)
    const n1 = page.locator('.node[data-node="n1"]')
    await n1.locator('.inst.primary[data-host="host-1"]').waitFor({ timeout: 30_000 })
    await n1.locator('.inst[data-role="replica"][data-host="host-2"] .state-available').waitFor({ timeout: 60_000 })
    expect(await page.locator('code', { hasText: /^postgresql:\/\/admin@/ }).count()).toBe(3)
    await shot(page, 'database')
    await n1.getByRole('button', { name: 'Switchover…' }).click()
    await page.locator('#confirm[open]').waitFor()
    await page.locator('#confirm-ok').press('Enter') // keyboard: the confirm button has focus
    await page.waitForURL(/#\/databases\/app\/tasks\//)
    await page.locator('#task-status .state-completed').waitFor({ timeout: 120_000 })
    await page.goto(`${h1.url}/ui#/databases/app`)
    await n1.locator('.inst.primary[data-host="host-2"]').waitFor({ timeout: 30_000 })
    expect(await n1.locator('.inst.primary').count()).toBe(1)
    await shot(page, 'database-after-switchover')
    // Dark when the system asks for it.
    await page.emulateMedia({ colorScheme: 'dark' })
    expect(await page.evaluate('getComputedStyle(document.body).backgroundColor')).toBe('rgb(13, 17, 23)')
    await shot(page, 'database-dark')
    await page.emulateMedia({ colorScheme: 'light' })
    expect(await page.evaluate('getComputedStyle(document.body).backgroundColor')).toBe('rgb(255, 255, 255)')
  }, 180_000)
})

describe('the web console with a conflict from a partition', () => {
  let cluster: TestCluster | undefined
  let h1: DaemonProcess, h2: DaemonProcess, h3: DaemonProcess
  let browser: Browser
  let cutOffBanner = ''

  beforeAll(async () => {
    // No instances: the conflict lives in the document. Partitioned the way test/partition.test.ts does it: the other
    // side's daemons are down while one side writes.
    cluster = await TestCluster.create('console-conflict', { reconcile: false })
    ;[h1, h2, h3] = await cluster.initAndJoin(3) as [DaemonProcess, DaemonProcess, DaemonProcess]
    await ok(h1.post('/v1/databases', { id: 'clash', spec: { database_name: 'app', postgresql_conf: { work_mem: '4MB' }, nodes: [{ name: 'n1', host_ids: ['host-1'], port: 5501 }] } }), 'create clash')
    await until('clash on host-3', async () => (await h3.get('/v1/databases/clash')).status === 200)
    await h3.stop()
    await updateSpec(h1, 'clash', s => { s.postgresql_conf.work_mem = '8MB' })
    await until('side A settled', async () => await heads(h1) === await heads(h2))
    await h1.stop()
    await h2.stop()
    await h3.start()
    await updateSpec(h3, 'clash', s => { s.postgresql_conf.work_mem = '16MB' })
    browser = await launch()
    // Alone, host-3's console says so: what is written here merges later.
    const alone = await browser.newPage({ viewport: { width: 1280, height: 500 } })
    await alone.goto(`${h3.url}/ui#/`)
    await alone.locator('#banner:not([hidden])').waitFor({ timeout: 15_000 })
    cutOffBanner = (await alone.locator('#banner').textContent()) ?? ''
    await shot(alone, 'cut-off')
    await alone.close()
    await Promise.all([h1.start(), h2.start()])
    await until('documents merged', async () => new Set(await Promise.all([h1, h2, h3].map(heads))).size === 1, 30_000, 100)
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await cluster?.destroy()
  })

  it('told the cut-off host\'s user that writes there merge later', () => {
    expect(cutOffBanner).toBe('host-3 is cut off from the other hosts: writes here will merge when the hosts meet again.')
  })

  it('shows both values and who wrote them, and keeps the one picked', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    await page.goto(`${h1.url}/ui#/databases/clash`)
    const conflict = page.locator('.conflict[data-conflict="spec.postgresql_conf.work_mem"]')
    await conflict.waitFor({ timeout: 10_000 })
    const text = (await conflict.textContent()) ?? ''
    expect(text).toContain('"8MB"')
    expect(text).toContain('"16MB"')
    expect(text).toContain('host-1')
    expect(text).toContain('host-3')
    await shot(page, 'conflict')
    // Keep the value not in effect now (the second listed), so the outcome cannot be the merge's own pick.
    const item = conflict.locator('li').nth(1)
    const kept = ((await item.locator('code').textContent()) ?? '').replace(/"/g, '')
    await item.getByRole('button', { name: 'Keep this value' }).click()
    await page.locator('#confirm-ok').click()
    await page.getByText('No conflicts.').waitFor({ timeout: 10_000 })
    for (const d of [h1, h2, h3]) {
      await until(`${d.hostId} settled`, async () => {
        const db = await ok(d.get('/v1/databases/clash'), 'get clash')
        return db.conflicts === undefined && db.spec.postgresql_conf.work_mem === kept
      }, 10_000)
    }
    // The history's diff from the oldest version shown to the newest names the field (other changes since the
    // resolving update, its task's, may leave the last two versions of the database alike).
    await page.locator('#history-form tbody tr').last().locator('input[name="from"]').check()
    await page.locator('#history-form tbody tr').first().locator('input[name="to"]').check()
    // The answer lands even when a live update re-renders the page (a new #diff) while the request runs: the request
    // is held until another change has re-rendered the page.
    let requested: () => void = () => {}
    let release: () => void = () => {}
    const inFlight = new Promise<void>(resolve => { requested = resolve })
    const held = new Promise<void>(resolve => { release = resolve })
    await page.route(/\/history\?from=/, async route => { requested(); await held; await route.continue() })
    await page.getByRole('button', { name: 'Show the difference' }).click()
    await inFlight
    await page.locator('#diff').evaluate(e => { e.setAttribute('data-before-render', '') })
    await ok(h1.post('/v1/databases', { id: 'bystander', spec: { database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1'], port: 5502 }] } }), 'create bystander')
    await page.locator('#diff:not([data-before-render])').waitFor({ state: 'attached', timeout: 10_000 })
    release()
    await expect.poll(async () => await page.locator('#diff').textContent(), { timeout: 10_000 }).toContain('spec.postgresql_conf.work_mem')
    await shot(page, 'history-diff')
  }, 60_000)
})

/**
 * One https request with the host's admin client certificate (what `pgmesh` uses after `cluster init`), or with none
 * before init, when the host has none yet.
 */
async function asAdmin (d: DaemonProcess, method: string, path: string, body?: unknown, certificate = true): Promise<{ status: number, body: any }> {
  const tls = async (name: string): Promise<string> => await readFile(join(d.options.dataDir, 'tls', name), 'utf8')
  const [cert, key] = certificate ? await Promise.all([tls('admin.crt'), tls('admin.key')]) : []
  const payload = body === undefined ? undefined : JSON.stringify(body)
  return await new Promise((resolve, reject) => {
    const req = request(`${d.url}${path}`, {
      method, ...(cert === undefined ? {} : { cert, key }), rejectUnauthorized: false, timeout: 30_000,
      headers: payload === undefined ? {} : { 'content-type': 'application/json' }
    }, (res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => { text += chunk.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) }) })
    })
    req.on('error', reject)
    req.end(payload)
  })
}

describe('the web console on a host that needs credentials', () => {
  let cluster: TestCluster | undefined
  let h1: DaemonProcess
  let browser: Browser

  beforeAll(async () => {
    cluster = await TestCluster.create('console-tls', { reconcile: false, https: true, args: ['--tls', 'auto'] })
    h1 = await cluster.add('host-1')
    // Before it belongs to a cluster, a --tls auto host lets loopback clients init it (no certificate yet).
    const init = await asAdmin(h1, 'GET', '/v1/cluster/init?cluster_id=tls', undefined, false)
    expect(init.status).toBe(200)
    await until('host-1 to take its admin certificate', async () => (await asAdmin(h1, 'GET', '/v1/hosts').catch(() => ({ status: 0 }))).status === 200)
    browser = await launch()
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await cluster?.destroy()
  })

  it('asks a browser without credentials for a token, refuses a wrong one, and shows the cluster with a right one', async () => {
    const created = await asAdmin(h1, 'POST', '/v1/tokens', { name: 'console', role: 'viewer' })
    expect(created.status).toBe(201)
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 700 } })
    const page = await context.newPage()
    await page.goto(`${h1.url}/ui#/`)
    await page.getByRole('heading', { name: 'Sign in to this host' }).waitFor({ timeout: 10_000 })
    await shot(page, 'login')
    await page.getByLabel('API token').fill('pgm_not-a-token')
    await page.getByLabel('API token').press('Enter')
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor({ timeout: 10_000 })
    await page.getByLabel('API token').fill(created.body.token as string)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.locator('tr[data-host="host-1"] .state-healthy').waitFor({ timeout: 10_000 })
    await expect.poll(async () => await page.locator('#talking-to').textContent()).toBe('talking to host-1')
    // The token lives in this tab's sessionStorage, nowhere the page puts into the address or a cookie.
    expect(page.url()).not.toContain(created.body.token)
    expect(await context.cookies()).toEqual([])
    await context.close()
  }, 60_000)
})
