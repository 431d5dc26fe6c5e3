// The default reporter of `npm test` (package.json "tap".reporter): one line per failing test file with
// its failing assertions and their diagnostics, then one line for all files. Nothing is redrawn, so the
// output is the same on a terminal and in a log. `npm test -- --reporter=tap` gives the raw TAP.
import { Transform } from 'node:stream'

const indentOf = (line) => line.length - line.trimStart().length

export default class TapSummary extends Transform {
  #rest = ''
  #buffer = []
  #passed = 0
  #failed = []
  /** tap's `# ERROR:` lines (a coverage threshold not met): they fail the run though every file passed. */
  #errors = []
  #started = Date.now()

  _transform (chunk, _encoding, done) {
    const lines = (this.#rest + chunk.toString('utf8')).split('\n')
    this.#rest = lines.pop() ?? ''
    for (const line of lines) this.#line(line)
    done()
  }

  _flush (done) {
    if (this.#rest !== '') this.#line(this.#rest)
    const seconds = ((Date.now() - this.#started) / 1000).toFixed(0)
    const files = this.#passed + this.#failed.length
    this.push(this.#failed.length === 0
      ? `\n✓ all ${files} test files passed (${seconds} s)\n`
      : `\n✗ ${this.#failed.length} of ${files} test files failed (${seconds} s):\n${this.#failed.map((f) => `  ${f}\n`).join('')}`)
    if (this.#errors.length > 0) {
      const how = 'the thresholds are package.json "tap"; one file alone: npx tap --disable-coverage FILE'
      this.push(`✗ and the run fails: ${this.#errors.join('; ')} (${how})\n`)
    }
    done()
  }

  #line (line) {
    if (indentOf(line) > 0 || /^# Subtest/.test(line)) { this.#buffer.push(line); return }
    const result = /^(not )?ok \d+ - (.*?)(?: # .*)?$/.exec(line)
    if (result !== null) {
      if (result[1] === undefined) this.#passed++
      else { this.#failed.push(result[2]); this.push(`✗ ${result[2]}\n${this.#failures().join('\n')}\n`) }
      this.#buffer = []
    } else if (/^Bail out!|^# \{ total/.test(line)) {   // a bail-out; tap's count of assertions
      this.push(`${line}\n`)
    } else if (/^# ERROR: /.test(line)) {
      this.#errors.push(line.slice('# ERROR: '.length))
    }
  }

  /** The failing assertions of the buffered file, each with its diagnostics (its more-indented lines). */
  #failures () {
    const kept = []
    let depth = -1
    for (const line of this.#buffer) {
      if (depth >= 0 && (indentOf(line) > depth || line.trim() === '')) { kept.push(line); continue }
      depth = -1
      if (/^\s*not ok /.test(line)) { depth = indentOf(line); kept.push(line) }
    }
    return kept
  }
}
