/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) of a bench server: where the CPU goes on the request
 * path, in buckets (each sample is charged to the innermost frame that names a known piece: a lib
 * function of fastify-xems, the cookie module, Fastify, Node's HTTP stack...) and as the inclusive time
 * of the main steps (the xems hooks, engine.open / engine.commit, the crypto helpers).
 *
 * `node dist/bench/profile.js <file.cpuprofile> [--per-request-us <server CPU µs per request>]`,
 * or through `npm run bench:profile`, which profiles the rotating xems server and calls this.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

interface CallFrame { functionName: string, url: string, lineNumber: number, columnNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
export interface CpuProfile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

export interface ProfileSummary {
  /** Sampled time (ms) that was not idle, in the window. */
  activeMs: number
  idleMs: number
  gcMs: number
  buckets: Array<{ name: string, ms: number, share: number }>
  steps: Array<{ name: string, ms: number, share: number }>
  topSelf: Array<{ name: string, ms: number, share: number }>
}

/** Path of a frame's script relative to the repo (`dist/lib/session/token.js`, `node_modules/fastify/...`, `node:net`). */
function where (frame: CallFrame, repo: string): string {
  const url = frame.url
  if (url.startsWith('file://')) {
    const path = fileURLToPath(url)
    return path.startsWith(repo + '/') ? path.slice(repo.length + 1) : path
  }
  return url
}

const FASTIFY_PACKAGES = /^node_modules\/(fastify|find-my-way|avvio|light-my-request|fast-json-stringify|secure-json-parse|fast-querystring|fast-decode-uri-component|toad-cache|process-warning|abstract-logging|pino[^/]*|@fastify\/(error|ajv-compiler|fast-json-stringify-compiler|proxy-addr|forwarded|merge-json-schemas)|fastq|reusify|rfdc|ret|safe-regex2|content-type|ipaddr\.js|fastify-plugin)\//
const PEER_PACKAGES = /^node_modules\/(@fastify\/session|@fastify\/secure-session|connect-redis|express-session|sodium-native|uid-safe|cookie-signature|safe-stable-stringify)\//
const REDIS_PACKAGES = /^node_modules\/(ioredis|redis-parser|denque|cluster-key-slot|standard-as-callback|redis-errors|@ioredis\/)/

/** The bucket a frame names, or null when it says nothing by itself (natives, crypto internals, microtasks). */
function bucketOf (frame: CallFrame, file: string): string | null {
  const name = frame.functionName
  if (name === '(garbage collector)') return 'GC'
  if (name === '(idle)') return 'idle'
  if (name === '(program)') return 'V8 / native (program)'
  if (name === '(root)') return null
  if (file.startsWith('dist/lib/session/token.js')) {
    if (/^(recordIdOf|secretKeyOf|publicIdOf)$/.test(name)) return 'xems: SHA-256 names (record id, token key, public id)'
    if (name === 'generateLocator') return 'xems: CSPRNG (new tokens)'
    return 'xems: token syntax check'
  }
  if (file.startsWith('dist/lib/crypto/random-token.js')) return 'xems: CSPRNG (new tokens)'
  if (file.startsWith('dist/lib/crypto/cipher.js')) {
    // The one-shot digest helper serves the names and the grace box alike: its caller says which.
    if (name === 'sha') return null
    if (name === 'sha256Prefix16') return 'xems: SHA-256 names (record id, token key, public id)'
    return 'xems: successor and grace box (SHA-512)'
  }
  if (file.startsWith('dist/lib/store/rotation.js')) return 'xems: rotation rules'
  if (file.startsWith('dist/lib/session/data.js')) {
    return name === 'decodeData' ? 'xems: session data decode (JSON.parse)' : 'xems: session data diff (JSON.stringify)'
  }
  if (/^dist\/lib\/store\/redis\/(redis-store|scripts)\.js/.test(file)) return 'xems: RedisStore'
  if (/^dist\/lib\/store\/vault\/[^/]*\.js/.test(file)) return 'xems: vault (persistence)'
  if (file.startsWith('dist/lib/store/')) return 'xems: MemoryStore'
  if (/^dist\/lib\/session\/(engine|engine-types|options|checks|values|users|store-call|grace-chain)\.js/.test(file)) return 'xems: engine (other)'
  if (file.startsWith('dist/lib/session/handle.js')) return 'xems: XemsSession (other)'
  if (file.startsWith('dist/plugins/')) return 'xems: plugin hooks (other)'
  if (file.startsWith('dist/lib/')) return 'xems: lib (other)'
  if (file.startsWith('node_modules/@fastify/cookie/') || file.startsWith('node_modules/cookie/')) {
    if (/^(parse|parseCookie|parseCookies|fastifyCookieHandler|decode|tryDecode)$/.test(name)) return 'cookies: parse'
    if (/^(serialize|stringifySetCookie|setCookies|setCookie|fastifyCookieSetCookie|fastifyCookieOnSendHandler|encode)$/.test(name)) return 'cookies: serialize / Set-Cookie'
    return 'cookies: other'
  }
  if (REDIS_PACKAGES.test(file)) return 'ioredis client'
  if (PEER_PACKAGES.test(file)) return 'peer session plugin'
  if (FASTIFY_PACKAGES.test(file)) return 'Fastify (routing, hooks, reply)'
  if (/^node:(_http|http|net|stream|_stream|internal\/(http|stream|streams|net|dns))/.test(file)) return 'Node HTTP / net / streams'
  if (file.startsWith('dist/bench/')) return 'bench routes'
  return null
}

/** For samples no frame names: what the leaf is. */
function fallbackOf (frame: CallFrame, file: string): string {
  if (file.startsWith('node:internal/crypto') || /^(digest|update|randomFillSync|hkdfSync|createHash|createCipheriv|createDecipheriv)$/.test(frame.functionName)) return 'node crypto (unattributed)'
  if (file.startsWith('node:')) return 'Node runtime (microtasks, timers, events)'
  if (file === '') return 'builtins / natives (unattributed)'
  return 'other'
}

interface StepRule { name: string, file: string, functionName?: string, line?: number }

/** The 0-based line of the first line of `file` that contains `text`, for anonymous hooks. */
function lineOf (repo: string, file: string, text: string): number | undefined {
  try {
    const index = readFileSync(resolve(repo, file), 'utf8').split('\n').findIndex((line) => line.includes(text))
    return index === -1 ? undefined : index
  } catch {
    return undefined
  }
}

function stepRules (repo: string): StepRule[] {
  const rules: StepRule[] = []
  const onRequest = lineOf(repo, 'dist/plugins/session/index.js', "addHook('onRequest'")
  const onSend = lineOf(repo, 'dist/plugins/session/index.js', "addHook('onSend'")
  if (onRequest !== undefined) rules.push({ name: 'xems onRequest hook (resolve)', file: 'dist/plugins/session/index.js', line: onRequest })
  if (onSend !== undefined) rules.push({ name: 'xems onSend hook (finish: commit + rotate + Set-Cookie)', file: 'dist/plugins/session/index.js', line: onSend })
  rules.push(
    { name: '  engine.open (token check, record id and token key, store.resolve)', file: 'dist/lib/session/engine.js', functionName: 'open' },
    { name: '  new XemsSession (decode data, public id)', file: 'dist/lib/session/handle.js', functionName: 'XemsSession' },
    { name: '  XemsSession.finish (diff data, engine.commit)', file: 'dist/lib/session/handle.js', functionName: 'finish' },
    { name: '  engine.commit (new secret, grace box, token key, store.commit)', file: 'dist/lib/session/engine.js', functionName: 'commit' },
    { name: '  applyOutcome (reply.setCookie)', file: 'dist/plugins/session/index.js', functionName: 'applyOutcome' },
    { name: 'store.resolve', file: 'dist/lib/store/', functionName: 'resolve' },
    { name: 'store.commit', file: 'dist/lib/store/', functionName: 'commit' },
    { name: 'secretKeyOf (SHA-256 token key)', file: 'dist/lib/session/token.js', functionName: 'secretKeyOf' },
    { name: 'recordIdOf (SHA-256 record id)', file: 'dist/lib/session/token.js', functionName: 'recordIdOf' },
    { name: 'publicIdOf (SHA-256 public id)', file: 'dist/lib/session/token.js', functionName: 'publicIdOf' },
    { name: 'CSPRNG draws (new secrets, nonces)', file: 'dist/lib/crypto/random-token.js', functionName: 'drawnBase64url' },
    { name: 'rotation rules (match, present, rotate)', file: 'dist/lib/store/rotation.js' },
    { name: 'successorOf (next secret and grace box)', file: 'dist/lib/crypto/cipher.js', functionName: 'successorOf' },
    { name: 'decodeData', file: 'dist/lib/session/data.js', functionName: 'decodeData' },
    { name: 'diffData', file: 'dist/lib/session/data.js', functionName: 'diffData' },
    { name: 'requireSession guard', file: 'dist/plugins/session/guard.js' },
    { name: '@fastify/cookie: parse Cookie header', file: 'node_modules/@fastify/cookie/', functionName: 'parseCookies' },
    { name: '@fastify/cookie: serialize Set-Cookie', file: 'node_modules/@fastify/cookie/', functionName: 'setCookies' },
    { name: '@fastify/cookie: reply.setCookie', file: 'node_modules/@fastify/cookie/', functionName: 'fastifyCookieSetCookie' }
  )
  return rules
}

/**
 * Summarises `profile`; `window` ([start, end] in the profile's µs clock, i.e. process.hrtime) limits
 * it to the measured part of a run.
 */
export function summariseProfile (profile: CpuProfile, repo: string, window?: [number, number]): ProfileSummary {
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const node of profile.nodes) {
    byId.set(node.id, node)
    for (const child of node.children ?? []) parent.set(child, node.id)
  }
  const files = new Map<number, string>()
  const fileOf = (id: number): string => {
    let file = files.get(id)
    if (file === undefined) files.set(id, file = where(byId.get(id)!.callFrame, repo))
    return file
  }
  const rules = stepRules(repo)
  const matches = (rule: StepRule, frame: CallFrame, file: string): boolean =>
    file.startsWith(rule.file) &&
    (rule.functionName === undefined || frame.functionName === rule.functionName) &&
    (rule.line === undefined || frame.lineNumber === rule.line)

  const bucketCache = new Map<number, string>()
  const stepCache = new Map<number, number[]>()
  const buckets = new Map<string, number>()
  const steps = new Map<number, number>()
  const self = new Map<string, number>()
  let idle = 0
  let gc = 0
  let active = 0

  let time = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    time += profile.timeDeltas[i] ?? 0
    const weight = (profile.timeDeltas[i + 1] ?? 0) / 1000
    if (window !== undefined && (time < window[0] || time > window[1])) continue
    const leaf = profile.samples[i]!
    let bucket = bucketCache.get(leaf)
    if (bucket === undefined) {
      for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
        const found = bucketOf(byId.get(id)!.callFrame, fileOf(id))
        if (found !== null) { bucket = found; break }
      }
      bucket ??= fallbackOf(byId.get(leaf)!.callFrame, fileOf(leaf))
      bucketCache.set(leaf, bucket)
    }
    if (bucket === 'idle') { idle += weight; continue }
    active += weight
    if (bucket === 'GC') gc += weight
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + weight)

    let hits = stepCache.get(leaf)
    if (hits === undefined) {
      const found = new Set<number>()
      for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
        const frame = byId.get(id)!.callFrame
        const file = fileOf(id)
        rules.forEach((rule, index) => { if (matches(rule, frame, file)) found.add(index) })
      }
      hits = [...found]
      stepCache.set(leaf, hits)
    }
    for (const index of hits) steps.set(index, (steps.get(index) ?? 0) + weight)

    const leafFrame = byId.get(leaf)!.callFrame
    const label = `${leafFrame.functionName === '' ? '(anonymous)' : leafFrame.functionName} ${fileOf(leaf)}${leafFrame.url === '' ? '' : `:${leafFrame.lineNumber + 1}`}`
    self.set(label, (self.get(label) ?? 0) + weight)
  }
  const share = (ms: number): number => active === 0 ? 0 : ms / active
  const sorted = (map: Map<string, number>): Array<{ name: string, ms: number, share: number }> =>
    [...map].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms: Math.round(ms), share: share(ms) }))
  return {
    activeMs: Math.round(active),
    idleMs: Math.round(idle),
    gcMs: Math.round(gc),
    buckets: sorted(buckets),
    steps: rules.map((rule, index) => ({ name: rule.name, ms: Math.round(steps.get(index) ?? 0), share: share(steps.get(index) ?? 0) })),
    topSelf: sorted(self).slice(0, 25)
  }
}

/** Markdown tables of a summary; with `perRequestUs` (server CPU per request) each share is also given in µs per request. */
export function formatProfileSummary (summary: ProfileSummary, options: { perRequestUs?: number, title?: string } = {}): string {
  const perRequest = options.perRequestUs
  const us = (share: number): string => perRequest === undefined ? '' : ` | ${(share * perRequest).toFixed(1)}`
  const head = perRequest === undefined ? '' : ' | µs / request'
  const rule = perRequest === undefined ? '' : ' | ---:'
  const lines: string[] = []
  lines.push(`### ${options.title ?? 'CPU profile'}`)
  lines.push('')
  lines.push(`Sampled: ${summary.activeMs} ms busy, ${summary.idleMs} ms idle${perRequest === undefined ? '' : `; server CPU ${perRequest} µs per request`}.`)
  lines.push('')
  lines.push(`| where (self time, innermost known frame) | share of busy CPU${head} |`)
  lines.push(`| --- | ---:${rule} |`)
  for (const bucket of summary.buckets) lines.push(`| ${bucket.name} | ${(bucket.share * 100).toFixed(1)} %${us(bucket.share)} |`)
  lines.push('')
  lines.push(`| step (inclusive: the step and what it calls) | share of busy CPU${head} |`)
  lines.push(`| --- | ---:${rule} |`)
  for (const step of summary.steps) {
    if (step.ms === 0) continue
    lines.push(`| ${step.name.startsWith('  ') ? '&nbsp;&nbsp;' + step.name.trim() : step.name} | ${(step.share * 100).toFixed(1)} %${us(step.share)} |`)
  }
  lines.push('')
  lines.push('Top self time:')
  lines.push('')
  lines.push('| function | share |')
  lines.push('| --- | ---: |')
  for (const entry of summary.topSelf.slice(0, 15)) lines.push(`| \`${entry.name.replace(/\|/g, '/')}\` | ${(entry.share * 100).toFixed(1)} % |`)
  return lines.join('\n') + '\n'
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2]
  if (file === undefined) {
    console.error('usage: node dist/bench/profile.js <file.cpuprofile> [--per-request-us N]')
    process.exit(2)
  }
  const i = process.argv.indexOf('--per-request-us')
  const perRequestUs = i === -1 ? undefined : Number(process.argv[i + 1])
  const repo = resolve(fileURLToPath(import.meta.url), '../../..')
  const summary = summariseProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, repo)
  console.log(formatProfileSummary(summary, perRequestUs === undefined ? {} : { perRequestUs }))
}
