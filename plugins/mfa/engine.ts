/**
 * The one way the MFA plugin reaches the session engine (the sibling xemsSession plugin's, through the
 * accessor it exports for its siblings: `app.xems` is the documented API only).
 */
export { engineOf } from '../session/engine-access.js'
