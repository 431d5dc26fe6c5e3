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
    files: ['bench/run.ts'],
    rules: {
      // `resolve` there is node:path's; the promise's resolver is named resolvePromise instead.
      'promise/param-names': ['error', { resolvePattern: '^_?resolve(Promise)?$' }]
    }
  }
]
