import type { Logger } from 'pino'

/**
 * A pass over the document every `everyMs`, never two at once, plus the jobs the passes start: `stop` ends the
 * ticking and waits for those jobs (the backup and restore runners).
 */
export class PeriodicPass {
  private timer: NodeJS.Timeout | undefined
  private ticking = false
  private readonly jobs = new Set<Promise<void>>()

  constructor (private readonly pass: () => Promise<void>, private readonly everyMs: number, private readonly logger: Logger, private readonly what: string) {}

  start (): void {
    this.timer = setInterval(() => { this.tick() }, this.everyMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await Promise.allSettled([...this.jobs])
  }

  /** Keeps `job` until it settles, so that `stop` waits for it. */
  track (job: Promise<void>): void {
    this.jobs.add(job)
    const forget = (): void => { this.jobs.delete(job) }
    void job.then(forget, forget)
  }

  private tick (): void {
    if (this.ticking) return
    this.ticking = true
    this.pass().catch((err: unknown) => { this.logger.warn({ err }, `${this.what} pass failed`) }).finally(() => { this.ticking = false })
  }
}
