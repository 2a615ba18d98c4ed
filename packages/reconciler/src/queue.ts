/**
 * How urgent a job on an instance is:
 * - `immediate` (fencing): starts at once, even while another job of the instance runs — a primary that lost its
 *   lease must stop taking writes now, not after a slow ensure. Jobs queued after it wait for it.
 * - `high` (unfencing, hand-overs): runs next, ahead of every queued `normal` job.
 * - `normal` (the planner's actions): in order.
 */
export type Priority = 'immediate' | 'high' | 'normal'

interface Job { priority: Priority, label: string, run: () => Promise<void> }

interface Lane { active: Job[], pending: Job[] }

/**
 * One queue per instance: the only way the reconciler's parts act on an instance, so the planner's actions and the
 * HA loop's decisions (fence, unfence, hand over) never run interleaved, except a fence, which never waits.
 */
export class InstanceQueues {
  private readonly lanes = new Map<string, Lane>()

  /** Runs `work` on the instance's queue; resolves or rejects with it. */
  async run<T> (instanceId: string, priority: Priority, label: string, work: () => Promise<T>): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      const lane = this.lane(instanceId)
      const job: Job = { priority, label, run: async () => { await work().then(resolve, reject) } }
      if (priority === 'immediate') {
        this.begin(instanceId, lane, job)
        return
      }
      if (priority === 'high') {
        const firstNormal = lane.pending.findIndex(j => j.priority === 'normal')
        lane.pending.splice(firstNormal === -1 ? lane.pending.length : firstNormal, 0, job)
      } else {
        lane.pending.push(job)
      }
      this.pump(instanceId, lane)
    })
  }

  /** What runs or waits on the instance now, running first (tests, logs). */
  jobs (instanceId: string): string[] {
    const lane = this.lanes.get(instanceId)
    return lane === undefined ? [] : [...lane.active, ...lane.pending].map(j => j.label)
  }

  /** Whether a fence, unfence or hand-over runs or waits on the instance. */
  urgent (instanceId: string): boolean {
    const lane = this.lanes.get(instanceId)
    return lane !== undefined && [...lane.active, ...lane.pending].some(j => j.priority !== 'normal')
  }

  /** Resolves once no job runs or waits on any instance. */
  async idle (): Promise<void> {
    while (this.lanes.size > 0) await new Promise(resolve => setTimeout(resolve, 10))
  }

  private lane (instanceId: string): Lane {
    let lane = this.lanes.get(instanceId)
    if (lane === undefined) {
      lane = { active: [], pending: [] }
      this.lanes.set(instanceId, lane)
    }
    return lane
  }

  private pump (instanceId: string, lane: Lane): void {
    if (lane.active.length > 0) return
    const next = lane.pending.shift()
    if (next !== undefined) this.begin(instanceId, lane, next)
    else this.lanes.delete(instanceId)
  }

  private begin (instanceId: string, lane: Lane, job: Job): void {
    lane.active.push(job)
    void job.run().finally(() => {
      lane.active.splice(lane.active.indexOf(job), 1)
      this.pump(instanceId, lane)
    })
  }
}
