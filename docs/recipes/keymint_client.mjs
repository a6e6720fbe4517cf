#!/usr/bin/env node
// keymint licensing API recipe for Node 20+: panva's `paseto` (v4) and the
// global fetch. Activate this machine, verify the machine file offline,
// validate online with a fresh nonce and verify the signed receipt
// (docs/licensing-api.md).
//
//   npm ci    # in docs/recipes: installs paseto from package-lock.json
//
//   # activate, verify the machine file, then validate online
//   node keymint_client.mjs activate --server https://licenses.example.com \
//       --public-key k4.public.... --kid k4.pid.... --key DT1-CORE-... --fingerprint "$FP" \
//       [--save-machine-file machine.tok] [--license-token @license.tok]
//
//   # validate online only (receipt verified)
//   node keymint_client.mjs validate --server URL --public-key k4.public.... --key ... --fingerprint "$FP"
//
//   # no network: verify a stored machine file for this machine
//   node keymint_client.mjs offline --public-key k4.public.... --fingerprint "$FP" --machine-file @machine.tok
//
// Without --public-key the keys (with their kids) are fetched from
// GET /v1/keys (trust on first use: a real program embeds its key). `paseto`
// cannot compute a PASERK id (k4.pid needs BLAKE2b), so pass the key's --kid
// too (both are in GET /v1/keys and `keymint keys list`); a pinned key without
// --kid is tried whatever kid a token's footer names (the signature decides).
// Prints one JSON line. Exit codes: 0 licensed, 1 not licensed (or the
// server refused: a 4xx with a code), 2 bad usage, 3 cannot reach the server
// or a signed answer did not verify.
//
// KEYMINT_RECIPE_TEST_NONCE (tests only): check the receipt against this
// nonce instead of the one sent, as if an old answer were replayed; the
// recipe must then fail.

import { InspectFooter, PublicProtocol } from 'paseto'
import { ImportPublicKeyFactory, VerifyFactory } from 'paseto/v4/public'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const v4 = new PublicProtocol(ImportPublicKeyFactory, VerifyFactory)
const TIMEOUT_MS = 30_000
// How far this machine's clock may lag the server's for "not yet valid".
const CLOCK_SKEW_S = 300

class Unverified extends Error {}
class Refused extends Error {
  constructor(status, body) {
    super(`HTTP ${status} ${body.code}: ${body.error}`)
    this.status = status
    this.body = body
  }
}

// --- keys -------------------------------------------------------------------

/** The trusted keys: [{ kid (or null for a pinned key without --kid), key }]. */
async function loadKeys(server, paserks, kids) {
  if (paserks.length > 0) {
    if (kids.length > 0 && kids.length !== paserks.length) usage('give one --kid per --public-key')
    return Promise.all(
      paserks.map(async (paserk, i) => ({ kid: kids[i] ?? null, key: await v4.ImportPublicKey(paserk.trim()) })),
    )
  }
  if (!server) usage('--server or --public-key is required')
  const { body } = await request('GET', `${server}/v1/keys`)
  return Promise.all(body.keys.map(async (k) => ({ kid: k.kid, key: await v4.ImportPublicKey(k.public_key) })))
}

/**
 * The claims of a v4.public token signed by the key its footer's kid names.
 * The footer is read before verification only to choose the key; the
 * signature covers it. `allowNonExpiring` is needed for perpetual license
 * tokens only: receipts and machine files always carry `exp`.
 */
async function verifyToken(keys, token, { allowNonExpiring = false } = {}) {
  token = token.trim()
  if (!token.startsWith('v4.public.')) throw new Unverified('not a PASETO v4.public token')
  let kid
  try {
    kid = JSON.parse(new TextDecoder().decode(InspectFooter(token))).kid
  } catch (e) {
    throw new Unverified(`unreadable footer: ${e.message}`)
  }
  const candidates = keys.filter((k) => k.kid === kid)
  if (candidates.length === 0) candidates.push(...keys.filter((k) => k.kid === null))
  if (candidates.length === 0) throw new Unverified(`signed by unknown key ${kid}`)
  let last
  for (const { key } of candidates) {
    try {
      // `paseto` checks exp, nbf and iat itself (clockTolerance widens all
      // three; exp is checked again below without it).
      const { claims } = await v4.Verify(key, token, { allowNonExpiring, clockTolerance: CLOCK_SKEW_S })
      if (claims.exp !== undefined && Date.now() >= Date.parse(claims.exp)) {
        throw new Unverified(`expired at ${claims.exp}`)
      }
      return claims
    } catch (e) {
      last = e
    }
  }
  if (last instanceof Unverified) throw last
  throw new Unverified(`does not verify (${last.code ?? last.name}: ${last.message})`)
}

function same(a, b) {
  if (typeof a !== 'string' || typeof b !== 'string') return false
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** A key as the server echoes it: upper case, and in the four random groups
 * Crockford's readings (O is 0, I and L are 1). */
function canonicalKey(key) {
  const parts = key.trim().toUpperCase().split('-')
  return [...parts.slice(0, 2), ...parts.slice(2).map((g) => g.replace(/O/g, '0').replace(/[IL]/g, '1'))].join('-')
}

async function verifyMachineFile(keys, token, fingerprint, nonce) {
  const claims = await verifyToken(keys, token)
  if (claims.typ !== 'machine') throw new Unverified(`a ${claims.typ ?? 'license'} token, not a machine file`)
  if (!same(claims.fingerprint, fingerprint)) throw new Unverified('the machine file was issued for another machine')
  if (nonce !== undefined && !same(claims.nonce, nonce)) {
    throw new Unverified("the machine file does not echo this activation's nonce")
  }
  return claims
}

async function verifyReceipt(keys, token, nonce) {
  const claims = await verifyToken(keys, token)
  if (claims.typ !== 'receipt') throw new Unverified(`a ${claims.typ ?? 'license'} token, not a receipt`)
  if (!same(claims.nonce, nonce)) {
    throw new Unverified("the receipt does not echo this request's nonce (replayed or forged)")
  }
  return claims
}

async function verifyLicenseToken(keys, token) {
  // A perpetual license token has no exp: without allowNonExpiring,
  // paseto 4 refuses it ("Missing required \"exp\" claim").
  const claims = await verifyToken(keys, token, { allowNonExpiring: true })
  if (claims.typ !== undefined) throw new Unverified(`a ${claims.typ} token, not a license`)
  return claims
}

// --- HTTP -------------------------------------------------------------------

async function request(method, url, body) {
  const init = { method, headers: { accept: 'application/json' }, signal: AbortSignal.timeout(TIMEOUT_MS) }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  const resp = await fetch(url, init)
  const text = await resp.text()
  let json = null
  try {
    json = text ? JSON.parse(text) : null
  } catch {
    throw new Unverified(`HTTP ${resp.status}: not JSON`)
  }
  if (!resp.ok) {
    if (!json || typeof json.code !== 'string') throw new Unverified(`HTTP ${resp.status} without keymint's error body`)
    throw new Refused(resp.status, json)
  }
  return { status: resp.status, body: json }
}

// Unreserved characters only: a fingerprint can never become "." or "..".
const segment = (text) => encodeURIComponent(text).replace(/[.!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())

const freshNonce = () => randomBytes(24).toString('base64url')

async function activate(server, keys, key, fingerprint) {
  const nonce = freshNonce()
  const url = `${server}/v1/licenses/${segment(key)}/machines/${segment(fingerprint)}`
  const { status, body } = await request('PUT', url, { platform: `${process.platform}-${process.arch}`, nonce })
  const claims = await verifyMachineFile(keys, body.machine_file, fingerprint, nonce)
  if (canonicalKey(claims.key) !== canonicalKey(key)) throw new Unverified(`the machine file is for key ${claims.key}`)
  if (claims.machine !== body.machine.id) throw new Unverified('the body names another machine than the machine file')
  if ((status === 201) !== body.created) throw new Unverified(`HTTP ${status} with created=${body.created}`)
  return { status, body, claims }
}

async function validate(server, keys, key, fingerprint, product) {
  const nonce = freshNonce()
  const ask = { key, nonce }
  if (fingerprint) ask.fingerprint = fingerprint
  if (product) ask.product = product
  const { body } = await request('POST', `${server}/v1/licenses/validate`, ask)
  // Tests only: pretend another nonce was sent (a replayed answer).
  const expected = process.env.KEYMINT_RECIPE_TEST_NONCE || nonce
  const receipt = await verifyReceipt(keys, body.receipt, expected)
  if (receipt.valid !== body.valid || receipt.code !== body.code) {
    throw new Unverified(`body says ${body.code}/${body.valid}, receipt ${receipt.code}/${receipt.valid}`)
  }
  if (canonicalKey(receipt.key) !== canonicalKey(key)) throw new Unverified(`the receipt is for key ${receipt.key}`)
  if ((receipt.fingerprint ?? undefined) !== fingerprint) throw new Unverified('the receipt is for another fingerprint')
  return { body, receipt }
}

// --- the program ------------------------------------------------------------

function usage(message) {
  process.stderr.write(
    `${message}\nusage: keymint_client.mjs activate|validate|offline --fingerprint FP [--server URL] [--key KEY]\n` +
      '       [--public-key k4.public... [--kid k4.pid...]] [--product P] [--license-token TOKEN|@file]\n' +
      '       [--save-machine-file FILE] [--machine-file TOKEN|@file]\n',
  )
  process.exit(2)
}

/** `@path` reads a file, anything else is the value itself. */
const readArg = (value) => (value.startsWith('@') ? readFileSync(value.slice(1), 'utf8') : value).trim()

async function main() {
  let parsed
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        server: { type: 'string' },
        'public-key': { type: 'string', multiple: true, default: [] },
        kid: { type: 'string', multiple: true, default: [] },
        key: { type: 'string' },
        fingerprint: { type: 'string' },
        product: { type: 'string' },
        'license-token': { type: 'string' },
        'save-machine-file': { type: 'string' },
        'machine-file': { type: 'string' },
      },
    })
  } catch (e) {
    usage(e.message)
  }
  const { values: a, positionals } = parsed
  const mode = positionals[0]
  if (positionals.length !== 1 || !['activate', 'validate', 'offline'].includes(mode)) usage('one mode is required')
  if (!a.fingerprint) usage('--fingerprint is required')
  if (mode !== 'offline' && !(a.server && a.key)) usage('--server and --key are required to activate or validate')
  if (mode === 'offline' && !(a['public-key'].length && a['machine-file'])) {
    usage('offline needs --public-key and --machine-file: no network is used')
  }
  const server = (a.server ?? '').replace(/\/+$/, '')
  const out = { mode }
  const print = () => process.stdout.write(JSON.stringify(out) + '\n')
  try {
    const keys = await loadKeys(server, a['public-key'], a.kid)
    if (a['license-token']) {
      const lic = await verifyLicenseToken(keys, readArg(a['license-token']))
      Object.assign(out, { license_token_ok: true, license_token_exp: lic.exp ?? null })
    }
    if (mode === 'offline') {
      const claims = await verifyMachineFile(keys, readArg(a['machine-file']), a.fingerprint)
      Object.assign(out, {
        machine_file_ok: true,
        machine: claims.machine,
        key: claims.key,
        entitlements: claims.entitlements,
        machine_file_exp: claims.exp,
      })
      print()
      return 0
    }
    if (mode === 'activate') {
      const { status, body, claims } = await activate(server, keys, a.key, a.fingerprint)
      Object.assign(out, {
        activated: true,
        created: status === 201,
        machine_file_ok: true,
        machine: claims.machine,
        machine_file_exp: claims.exp,
      })
      if (a['save-machine-file']) writeFileSync(a['save-machine-file'], body.machine_file)
    }
    const { body, receipt } = await validate(server, keys, a.key, a.fingerprint, a.product)
    Object.assign(out, {
      receipt_ok: true,
      code: receipt.code,
      valid: receipt.valid,
      receipt_exp: receipt.exp,
      access_until: body.access_until,
      warnings: body.warnings,
    })
    print()
    return receipt.valid ? 0 : 1
  } catch (e) {
    if (e instanceof Refused) {
      Object.assign(out, { refused: e.status, code: e.body.code, error: e.body.error })
      if (e.body.retry_after !== undefined) out.retry_after = e.body.retry_after
      print()
      return 1
    }
    if (e instanceof Unverified) out.error = `does not verify: ${e.message}`
    else if (e instanceof TypeError && e.cause) out.error = `cannot reach the license server: ${e.cause.message ?? e.cause}`
    else out.error = `unexpected answer or bad input: ${e.name}: ${e.message}`
    print()
    return 3
  }
}

process.exitCode = await main()
