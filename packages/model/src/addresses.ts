/** An address only this machine reaches: `localhost`, `::1` or 127.0.0.0/8. */
export function isLoopbackAddress (address: string): boolean {
  return address === 'localhost' || address === '::1' || /^127\.\d+\.\d+\.\d+$/.test(address)
}
