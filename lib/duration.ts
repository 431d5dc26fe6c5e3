import { xemsError } from './errors.js'

/** A duration: a whole number of milliseconds, or a string such as `'500ms'`, `'30s'`, `'15m'`, `'1h'`, `'5d'`. */
export type Duration = number | `${number}${DurationUnit}`
type DurationUnit = 'ms' | 's' | 'm' | 'h' | 'd'

const UNIT_MS: Record<DurationUnit, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const DURATION_SYNTAX = /^(\d{1,9})(ms|s|m|h|d)$/

/** Longest duration accepted anywhere: ten years, far beyond any session cap, well inside a safe integer. */
const LONGEST_MS = 10 * 365 * UNIT_MS.d

/**
 * Converts a duration to milliseconds. Anything that is not a non-negative whole number of
 * milliseconds or `<digits><unit>` fails with FST_XEMS_BAD_DURATION naming `option`.
 */
export function parseDuration (value: unknown, option: string): number {
  let ms: number | undefined
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) ms = value
  } else if (typeof value === 'string') {
    const match = DURATION_SYNTAX.exec(value)
    if (match !== null) ms = Number(match[1]) * UNIT_MS[match[2] as DurationUnit]
  }
  if (ms === undefined || ms > LONGEST_MS) {
    throw xemsError('FST_XEMS_BAD_DURATION', [option, describe(value)])
  }
  return ms
}

/** Like parseDuration, but zero is refused: lifetimes and windows must be positive. */
export function parsePositiveDuration (value: unknown, option: string): number {
  const ms = parseDuration(value, option)
  if (ms === 0) {
    throw xemsError('FST_XEMS_BAD_DURATION', [option, describe(value)])
  }
  return ms
}

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)
  if (typeof value === 'number') return String(value)
  return typeof value
}
