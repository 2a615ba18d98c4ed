import { describe, expect, it } from 'vitest'
import { formatBytes, formatCpus, parseBytes, parseCpus } from './units.js'

describe('memory', () => {
  it('parses SI and IEC units like go-humanize ParseBytes', () => {
    const cases: Array<[string, number]> = [
      ['16GiB', 16 * 1024 ** 3], ['16gib', 16 * 1024 ** 3], ['500M', 500e6], ['500 MB', 500e6], ['1.5Gi', 1.5 * 1024 ** 3],
      ['1,024', 1024], ['42', 42], ['42b', 42], ['2k', 2000], ['2KiB', 2048], ['1T', 1e12], ['1.', 1]
    ]
    for (const [text, bytes] of cases) expect(parseBytes(text), text).toEqual({ ok: true, value: bytes })
  })

  it('gives the anchor error text for what it cannot parse', () => {
    expect(parseBytes('GiB')).toEqual({ ok: false, message: 'failed to parse bytes: strconv.ParseFloat: parsing "": invalid syntax' })
    expect(parseBytes('1.2.3G')).toEqual({ ok: false, message: 'failed to parse bytes: strconv.ParseFloat: parsing "1.2.3": invalid syntax' })
    expect(parseBytes('16 XB')).toEqual({ ok: false, message: 'failed to parse bytes: unhandled size name: xb' })
    expect(parseBytes('99999EiB')).toEqual({ ok: false, message: 'failed to parse bytes: too large: 99999EiB' })
  })

  it('renders SI bytes without a space, as the anchor returns them', () => {
    expect(formatBytes(16 * 1024 ** 3)).toBe('17GB')
    expect(formatBytes(500e6)).toBe('500MB')
    expect(formatBytes(1.5e9)).toBe('1.5GB')
    expect(formatBytes(1e6)).toBe('1.0MB')
    expect(formatBytes(2048)).toBe('2.0kB')
    expect(formatBytes(9)).toBe('9B')
    expect(formatBytes(0)).toBeUndefined()
  })

  it("rounds ties to even like Go's %.0f", () => {
    expect(formatBytes(16.5e9)).toBe('16GB')
    expect(formatBytes(17.5e9)).toBe('18GB')
  })
})

describe('cpus', () => {
  it('parses whole, decimal and milli CPUs', () => {
    expect(parseCpus('14')).toBe(14)
    expect(parseCpus('0.5')).toBe(0.5)
    expect(parseCpus('500m')).toBe(0.5)
    expect(parseCpus('0.0001')).toBeUndefined()
    expect(parseCpus('1.5k')).toBeUndefined()
  })

  it('renders with an SI prefix like go-humanize SI', () => {
    expect(formatCpus(0.5)).toBe('500m')
    expect(formatCpus(0.001)).toBe('1m')
    expect(formatCpus(0.25)).toBe('250m')
    expect(formatCpus(1.5)).toBe('1.5')
    expect(formatCpus(14)).toBe('14')
    expect(formatCpus(2)).toBe('2')
    expect(formatCpus(0)).toBeUndefined()
  })

  it('renders 1000 CPUs and more plainly so the result still matches the cpus pattern', () => {
    expect(formatCpus(1000)).toBe('1000')
    expect(formatCpus(1500.5)).toBe('1500.5')
  })
})
