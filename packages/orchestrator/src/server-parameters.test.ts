import { describe, expect, it } from 'vitest'
import { describedParameters } from './server-parameters.js'

describe('describedParameters', () => {
  it("takes the first tab-separated field of each line of postgres --describe-config", () => {
    const output = 'port\tpostmaster\tConnections\tINTEGER\t5432\t1\t65535\tSets the TCP port.\t\n' +
      'output_plugin_libraries\tsuperuser\tReplication\tSTRING\tpgoutput, test_decoding\t\t\tLists libraries.\t\n\n'
    expect([...describedParameters(output)]).toEqual(['port', 'output_plugin_libraries'])
  })
})
