import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

async function ip (...args: string[]): Promise<void> {
  await run('ip', args)
}

/**
 * A switch and one network namespace per host, for real partitions: `pmsw` holds a bridge, each host `pmh<i>` has
 * an eth0 at 10.98.0.<10+i> plugged into it, and the test process reaches them all through `pm-root` (10.98.0.1).
 * Cutting a host downs its port on the switch: it can reach no other host, and the test no longer reaches it from
 * outside either (run a client inside its namespace for that). Names and subnet are this project's own; only
 * namespaces created here are ever deleted.
 */
export class SwitchedHosts {
  private constructor (readonly count: number) {}

  static readonly SWITCH = 'pmsw'
  static readonly ROOT_LINK = 'pm-root'

  static netns (i: number): string { return `pmh${i}` }
  static address (i: number): string { return `10.98.0.${10 + i}` }

  static async create (count: number): Promise<SwitchedHosts> {
    const hosts = new SwitchedHosts(count)
    await hosts.destroy()
    const sw = SwitchedHosts.SWITCH
    await ip('netns', 'add', sw)
    await ip('-n', sw, 'link', 'set', 'lo', 'up')
    await ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge')
    await ip('-n', sw, 'link', 'set', 'br0', 'up')
    await ip('link', 'add', SwitchedHosts.ROOT_LINK, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', sw)
    await ip('-n', sw, 'link', 'set', 'uplink', 'master', 'br0', 'up')
    await ip('addr', 'add', '10.98.0.1/24', 'dev', SwitchedHosts.ROOT_LINK)
    await ip('link', 'set', SwitchedHosts.ROOT_LINK, 'up')
    for (let i = 1; i <= count; i++) {
      const ns = SwitchedHosts.netns(i)
      await ip('netns', 'add', ns)
      await ip('-n', sw, 'link', 'add', ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
      await ip('-n', sw, 'link', 'set', ns, 'master', 'br0', 'up')
      await ip('-n', ns, 'link', 'set', 'lo', 'up')
      await ip('-n', ns, 'addr', 'add', `${SwitchedHosts.address(i)}/24`, 'dev', 'eth0')
      await ip('-n', ns, 'link', 'set', 'eth0', 'up')
    }
    return hosts
  }

  async cut (i: number): Promise<void> { await ip('-n', SwitchedHosts.SWITCH, 'link', 'set', SwitchedHosts.netns(i), 'down') }
  async heal (i: number): Promise<void> { await ip('-n', SwitchedHosts.SWITCH, 'link', 'set', SwitchedHosts.netns(i), 'up') }

  async destroy (): Promise<void> {
    for (let i = 1; i <= this.count; i++) await ip('netns', 'del', SwitchedHosts.netns(i)).catch(() => {})
    await ip('netns', 'del', SwitchedHosts.SWITCH).catch(() => {})
    await ip('link', 'del', SwitchedHosts.ROOT_LINK).catch(() => {})
  }
}
