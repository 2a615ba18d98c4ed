/** An RFC 3339 UTC time to the second, as the anchor writes every timestamp (`2026-11-30T08:18:01Z`). */
export function rfc3339 (at: Date | number = new Date()): string {
  return new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z')
}
