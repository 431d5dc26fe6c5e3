// Lint: neostandard, the ESLint config Fastify and its plugins use (standard style for JS and TS).
// `npm run lint` runs it; .ci/run fails when it reports anything. Each override below says why.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    // scripts/tap-summary.d.mts types the reporter for the TypeScript tests
    filesTs: ['**/*.mts'],
    ignores: [
      'dist',
      'coverage',
      'node_modules',
      '.tap',
      '.xems-vault',
      'test/artifacts',
      'bench/results'
    ]
  }),
  {
    rules: {
      // `void promise` marks a promise deliberately left floating (a fire-and-forget close, a write
      // that a test lets race), `void value` a value kept only for its side effect or its type.
      // As an expression (`return void x`) it stays an error.
      'no-void': ['error', { allowAsStatement: true }]
    }
  },
  {
    files: ['**/*.ts', '**/*.mts'],
    rules: {
      // `const Change = {...} as const` beside `type Change = ...` is TypeScript's enum-like pattern
      // (a value and a type sharing a name); real redeclarations are compile errors in tsc already.
      '@typescript-eslint/no-redeclare': 'off'
    }
  },
  {
    files: ['lib/mfa/totp.ts'],
    rules: {
      // LABEL_FORBIDDEN matches control characters on purpose: they are refused in an issuer or label.
      'no-control-regex': 'off'
    }
  },
  {
    files: ['test/lib/session/token.test.ts'],
    rules: {
      // `new String(token)` is one of the bad inputs the token parser must refuse.
      'no-new-wrappers': 'off'
    }
  },
  {
    files: ['bench/load.ts', 'test/postgres/outage.test.ts', 'test/redis/stall.test.ts'],
    rules: {
      // These loops await while a flag or counter is changed by other in-flight requests or a timer;
      // the rule only sees the loop body and reports them as never-ending.
      'no-unmodified-loop-condition': 'off'
    }
  },
  {
    files: ['*.ts', '*.js', 'lib/**', 'plugins/**', 'scripts/**'],
    rules: {
      '@stylistic/max-len': ['error', {
        // Issue 13: shipped code stays readable in a side-by-side diff.
        code: 140,
        // A URL cannot be wrapped without breaking it (links in doc comments).
        ignoreUrls: true,
        // A regular expression split with + would need new RegExp(...) and lose its literal checking.
        ignoreRegExpLiterals: true
      }]
    }
  },
  {
    files: ['lib/errors.ts'],
    rules: {
      '@stylistic/max-len': ['error', {
        // The same limit as the rest of lib/.
        code: 140,
        // As above: a URL cannot be wrapped.
        ignoreUrls: true,
        // A message must stay one string literal: the type Slots<> counts its %s slots at compile time,
        // and 'a' + 'b' is only `string` to TypeScript. So a table line that is one code and its message may be longer.
        ignorePattern: "^  FST_XEMS_[A-Z_]+: \\[\\d{3}, '.*'\\],$"
      }]
    }
  },
  {
    files: ['test/**', 'bench/**', 'example/**'],
    rules: {
      '@stylistic/max-len': ['error', {
        // Tests, benchmarks and the example hold longer assertions and tables; 180 still fits a diff.
        code: 180,
        // A URL cannot be wrapped without breaking it.
        ignoreUrls: true,
        // A regular expression split with + would need new RegExp(...) and lose its literal checking.
        ignoreRegExpLiterals: true
      }]
    }
  },
  {
    files: ['bench/run.ts'],
    rules: {
      // `resolve` there is node:path's; the promise's resolver is named resolvePromise instead.
      'promise/param-names': ['error', { resolvePattern: '^_?resolve(Promise)?$' }]
    }
  }
]
