import type { gossipsub } from '@libp2p/gossipsub'

type MetricsRegister = NonNullable<NonNullable<Parameters<typeof gossipsub>[0]>['metricsRegister']>

/**
 * What gossipsub sent and received on the wire (protobuf RPCs, before yamux and noise framing): every copy of every
 * message, the duplicates that mesh forwarding and IHAVE/IWANT gossip bring, and the control traffic. The topics'
 * own handlers see each message once; this is what it cost to get it there.
 */
export interface GossipWireStats {
  rpcsSent: number
  rpcBytesSent: number
  /** Messages in the RPCs sent (a publish to n peers counts n). */
  messagesSent: number
  rpcsReceived: number
  rpcBytesReceived: number
  messagesReceived: number
  /** Messages received again after their first copy, per topic. */
  duplicatesReceived: Record<string, number>
  ihaveReceived: number
  iwantReceived: number
}

/** The gossipsub metric (by its name) that each unlabelled total is kept from. */
const TOTALS: Record<string, keyof Omit<GossipWireStats, 'duplicatesReceived'>> = {
  gossipsub_rpc_sent_count_total: 'rpcsSent',
  gossipsub_rpc_sent_bytes_total: 'rpcBytesSent',
  gossipsub_rpc_sent_message_total: 'messagesSent',
  gossipsub_rpc_recv_count_total: 'rpcsReceived',
  gossipsub_rpc_recv_bytes_total: 'rpcBytesReceived',
  gossipsub_rpc_recv_message_total: 'messagesReceived',
  gossipsub_rpc_recv_ihave_total: 'ihaveReceived',
  gossipsub_rpc_recv_iwant_total: 'iwantReceived'
}
const DUPLICATES = 'gossipsub_pre_validation_duplicate_total'

const noop = (): void => {}
const NOOP_GAUGE = { inc: noop, set: noop, addCollect: noop }

/**
 * gossipsub's `metricsRegister`, keeping only the few totals above as plain numbers (no Prometheus registry of its
 * ~100 metrics, and no collect callbacks: gossipsub's scrape-time work never runs). Everything else is a no-op.
 */
export class GossipStats {
  readonly wire: GossipWireStats = {
    rpcsSent: 0, rpcBytesSent: 0, messagesSent: 0, rpcsReceived: 0, rpcBytesReceived: 0, messagesReceived: 0, duplicatesReceived: {}, ihaveReceived: 0, iwantReceived: 0
  }

  /** Topic to metric label: the topic itself (a few fixed names). Filled by the mesh as it subscribes. */
  readonly topicLabels = new Map<string, string>()

  register (): MetricsRegister {
    const wire = this.wire
    return {
      gauge: ((config: { name: string }) => {
        const total = TOTALS[config.name]
        if (total !== undefined) return { ...NOOP_GAUGE, inc: (value = 1) => { wire[total] += value } }
        if (config.name === DUPLICATES) {
          return {
            ...NOOP_GAUGE,
            inc: (labels: { topic: string }, value = 1) => { wire.duplicatesReceived[labels.topic] = (wire.duplicatesReceived[labels.topic] ?? 0) + value }
          }
        }
        return NOOP_GAUGE
      }) as MetricsRegister['gauge'],
      histogram: (() => ({ startTimer: () => noop, observe: noop, reset: noop })) as MetricsRegister['histogram'],
      avgMinMax: (() => ({ set: noop })) as MetricsRegister['avgMinMax']
    }
  }
}
