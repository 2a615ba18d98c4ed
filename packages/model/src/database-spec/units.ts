/**
 * CPU and memory quantities, parsed and rendered the way the anchor does (it uses Go's go-humanize v1.0.1:
 * `ParseBytes`/`Bytes` for memory, `ParseSI`/`SI` for CPUs). Keeping the same parser means a spec the anchor accepts
 * is accepted here with the same byte count, and responses render the same strings (`16GiB` in → `17GB` out).
 */

/** The cpus field's pattern (anchor: `^[0-9]+(\.[0-9]{1,3}|m)?$`): whole CPUs, up to 3 decimals, or millicpus. */
export const CPUS_PATTERN = /^[0-9]+(\.[0-9]{1,3}|m)?$/

/** Result of parsing a quantity: the value, or the anchor's error text (`failed to parse bytes: …`). */
export type ParsedQuantity = { ok: true, value: number } | { ok: false, message: string }

const KB = 1000
const KIB = 1024
// go-humanize's bytesSizeTable; lookups are on the lower-cased, trimmed suffix.
const BYTE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: KB,
  kb: KB,
  ki: KIB,
  kib: KIB,
  m: KB ** 2,
  mb: KB ** 2,
  mi: KIB ** 2,
  mib: KIB ** 2,
  g: KB ** 3,
  gb: KB ** 3,
  gi: KIB ** 3,
  gib: KIB ** 3,
  t: KB ** 4,
  tb: KB ** 4,
  ti: KIB ** 4,
  tib: KIB ** 4,
  p: KB ** 5,
  pb: KB ** 5,
  pi: KIB ** 5,
  pib: KIB ** 5,
  e: KB ** 6,
  eb: KB ** 6,
  ei: KIB ** 6,
  eib: KIB ** 6
}

const MAX_UINT64 = 2 ** 64
// What Go's strconv.ParseFloat accepts from the digits, dots and commas ParseBytes collects.
const GO_DECIMAL = /^(?:[0-9]+\.?[0-9]*|\.[0-9]+)$/

/** go-humanize ParseBytes: leading number (commas allowed as separators) then an optional SI or IEC unit. */
export function parseBytes (text: string): ParsedQuantity {
  let numberEnd = 0
  while (numberEnd < text.length && /[0-9.,]/.test(text[numberEnd] ?? '')) numberEnd++
  const digits = text.slice(0, numberEnd).replaceAll(',', '')
  if (!GO_DECIMAL.test(digits)) {
    return { ok: false, message: `failed to parse bytes: strconv.ParseFloat: parsing ${JSON.stringify(digits)}: invalid syntax` }
  }
  const unit = text.slice(numberEnd).trim().toLowerCase()
  const multiplier = BYTE_UNITS[unit]
  if (multiplier === undefined) return { ok: false, message: `failed to parse bytes: unhandled size name: ${unit}` }
  const bytes = Number(digits) * multiplier
  if (bytes >= MAX_UINT64) return { ok: false, message: `failed to parse bytes: too large: ${text}` }
  return { ok: true, value: Math.trunc(bytes) }
}

/**
 * go-humanize Bytes without the space: SI units, one decimal below 10 (`1.5GB`), none above (`17GB`). Zero renders
 * as undefined because the anchor omits a zero memory from responses.
 */
export function formatBytes (bytes: number): string | undefined {
  if (bytes <= 0) return undefined
  if (bytes < 10) return `${Math.trunc(bytes)}B`
  const sizes = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB']
  const exponent = Math.floor(Math.log(bytes) / Math.log(1000))
  const value = Math.floor(bytes / 1000 ** exponent * 10 + 0.5) / 10
  const rendered = value < 10 ? value.toFixed(1) : goRoundToInteger(value).toString()
  return `${rendered}${sizes[exponent] ?? ''}`
}

/** Go's `%.0f`: round to nearest, ties to even (JS toFixed rounds ties up, which would turn 16.5GB into 17GB). */
function goRoundToInteger (value: number): number {
  const floor = Math.floor(value)
  const fraction = value - floor
  if (fraction > 0.5) return floor + 1
  if (fraction < 0.5) return floor
  return floor % 2 === 0 ? floor : floor + 1
}

/** CPUs from a string matching CPUS_PATTERN (`14`, `0.5`, `500m`); undefined for anything else. */
export function parseCpus (text: string): number | undefined {
  if (!CPUS_PATTERN.test(text)) return undefined
  return text.endsWith('m') ? Number(text.slice(0, -1)) / 1000 : Number(text)
}

/**
 * CPUs rendered with an SI prefix as go-humanize SI does (`0.5` → `500m`, `1.5` → `1.5`, `0.001` → `1m`). Zero
 * renders as undefined (the anchor omits it).
 *
 * Deliberate deviation: the anchor renders 1000 CPUs as `1k`, which its own cpus pattern then rejects when a client
 * sends the spec back; pgmesh renders whole numbers ≥ 1000 plainly so a GET → POST round trip always validates.
 */
export function formatCpus (cpus: number): string | undefined {
  if (cpus <= 0) return undefined
  if (cpus >= 1000) return trimDecimal(cpus.toFixed(3))
  let exponent = Math.floor(Math.floor(Math.log(cpus) / Math.log(10)) / 3) * 3
  let value = cpus / 10 ** exponent
  if (value === 1000) {
    exponent += 3
    value = cpus / 10 ** exponent
  }
  return trimDecimal(value.toFixed(6)) + (SI_PREFIXES[exponent] ?? `e${exponent}`)
}

// Only milli and none occur for values matching CPUS_PATTERN; micro covers stored values from elsewhere.
const SI_PREFIXES: Readonly<Record<number, string>> = { [-6]: 'µ', [-3]: 'm', 0: '' }

function trimDecimal (fixed: string): string {
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed
}
