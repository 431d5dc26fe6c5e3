/** fastify-xems/mfa: the password → second-factor login (xemsMfa), argon2id passwords, TOTP, recovery codes and passkeys. */
export { xemsMfa } from './plugins/mfa/index.js'
export type {
  XemsMfa, XemsMfaOptions, MfaRecord, MfaUserAdapter, MfaLockoutOptions, BeginOptions, BeginResult, VerifyResult, Enrolment
} from './plugins/mfa/index.js'
export type {
  PasskeyCredential, PasskeyInfo, PasskeyOptions, PasskeyAuthResult, PasskeyCreationOptions, PasskeyRequestOptions
} from './plugins/mfa/index.js'
export { hashPassword, verifyPassword, needsRehash, PASSWORD_DEFAULTS } from './lib/mfa/password.js'
export type { PasswordHashOptions } from './lib/mfa/password.js'
export { generateTotpSecret, totpUri, generateTotp, verifyTotp } from './lib/mfa/totp.js'
export type {
  TotpAlgorithm, TotpParameters, TotpUriOptions, TotpGenerateOptions, TotpVerifyOptions, TotpVerifyResult
} from './lib/mfa/totp.js'
export { generateRecoveryCodes, hashRecoveryCodes, findRecoveryCode, normalizeRecoveryCode } from './lib/mfa/recovery-codes.js'
