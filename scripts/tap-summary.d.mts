import { Transform } from 'node:stream'
/** tap's TAP stream in, a short summary out (see tap-summary.mjs). */
export default class TapSummary extends Transform {}
