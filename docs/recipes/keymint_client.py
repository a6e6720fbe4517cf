#!/usr/bin/env python3
"""keymint licensing API recipe for Python 3.11+: pyseto and the standard library.

Activate this machine, verify the machine file offline, validate online with
a fresh nonce and verify the signed receipt (docs/licensing-api.md).

    pip install pyseto

    # activate, verify the machine file, then validate online
    python3 keymint_client.py activate --server https://licenses.example.com \
        --public-key k4.public.... --key DT1-CORE-... --fingerprint "$FP" \
        [--save-machine-file machine.tok] [--license-token @license.tok]

    # validate online only (receipt verified)
    python3 keymint_client.py validate --server URL --public-key k4.public.... \
        --key DT1-CORE-... --fingerprint "$FP"

    # no network: verify a stored machine file for this machine
    python3 keymint_client.py offline --public-key k4.public.... \
        --fingerprint "$FP" --machine-file machine.tok

Without --public-key the keys are fetched from GET /v1/keys (trust on first
use: a real program embeds its public key instead). Prints one JSON line.
Exit codes: 0 licensed, 1 not licensed (or the server refused: a 4xx with a
code), 2 bad usage, 3 cannot reach the server or a signed answer did not
verify.

KEYMINT_RECIPE_TEST_NONCE (tests only): check the receipt against this nonce
instead of the one sent, as if an old answer were replayed; the recipe must
then fail.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

import pyseto
from pyseto import Key

TIMEOUT = 30
# How far this machine's clock may lag the server's for "not yet valid".
CLOCK_SKEW = timedelta(minutes=5)


class Unverified(Exception):
    """A signed answer that does not verify: exit 3."""


class Refused(Exception):
    """The server answered an error status with keymint's error body: exit 1."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"HTTP {status} {body.get('code')}: {body.get('error')}")
        self.status = status
        self.body = body


# --- keys -------------------------------------------------------------------


def load_keys(server: str | None, paserks: list[str], kids: list[str]) -> dict[str, Key]:
    """The trusted keys by kid (PASERK k4.pid). pyseto computes the kid of a
    pinned PASERK itself (a --kid given too must be that one); fetched keys
    must have the kid the server names."""
    keys: dict[str, Key] = {}
    if kids and len(kids) != len(paserks):
        raise SystemExit("give one --kid per --public-key")
    for i, paserk in enumerate(paserks):
        key = Key.from_paserk(paserk.strip())
        kid = key.to_paserk_id()
        if kids and kids[i] != kid:
            raise SystemExit(f"--kid {kids[i]} is not the id of that key ({kid})")
        keys[kid] = key
    if not paserks:
        if not server:
            raise SystemExit("--server or --public-key is required")
        _, body = request("GET", server.rstrip("/") + "/v1/keys")
        for k in body["keys"]:
            key = Key.from_paserk(k["public_key"])
            if key.to_paserk_id() != k["kid"]:
                raise Unverified(f"/v1/keys: key {k['kid']} does not have that id")
            keys[k["kid"]] = key
    return keys


def verify_token(keys: dict[str, Key], token: str) -> dict:
    """The claims of a v4.public token signed by the key its footer's kid
    names. The footer is read before verification only to pick the key; the
    signature covers it."""
    token = token.strip()
    parts = token.split(".")
    if len(parts) != 4 or parts[:2] != ["v4", "public"]:
        raise Unverified("not a PASETO v4.public token with a footer")
    try:
        footer = json.loads(pyseto.utils.base64url_decode(parts[3]))
        kid = footer["kid"]
    except Exception as e:
        raise Unverified(f"unreadable footer: {e}") from None
    key = keys.get(kid)
    if key is None:
        raise Unverified(f"signed by unknown key {kid}")
    try:
        decoded = pyseto.decode(key, token)
    except Exception as e:
        raise Unverified(f"signature does not verify ({type(e).__name__})") from None
    return json.loads(decoded.payload)


def when(claims: dict, name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_window(claims: dict, start: str, *, exp_required: bool) -> None:
    now = datetime.now(timezone.utc)
    begins = when(claims, start)
    if begins is not None and now + CLOCK_SKEW < begins:
        raise Unverified(f"not valid before {claims[start]}")
    exp = when(claims, "exp")
    if exp is None:
        if exp_required:
            raise Unverified("no exp claim")
    elif now >= exp:
        raise Unverified(f"expired at {claims['exp']}")


def same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def canonical_key(key: str) -> str:
    """A key as the server echoes it: upper case, and in the four random
    groups Crockford's readings (O is 0, I and L are 1)."""
    parts = key.strip().upper().split("-")
    table = str.maketrans("OIL", "011")
    return "-".join(parts[:2] + [g.translate(table) for g in parts[2:]])


def verify_machine_file(keys, token: str, fingerprint: str, nonce: str | None = None) -> dict:
    claims = verify_token(keys, token)
    if claims.get("typ") != "machine":
        raise Unverified(f"a {claims.get('typ', 'license')} token, not a machine file")
    if not same(claims.get("fingerprint"), fingerprint):
        raise Unverified("the machine file was issued for another machine")
    if nonce is not None and not same(claims.get("nonce"), nonce):
        raise Unverified("the machine file does not echo this activation's nonce")
    check_window(claims, "nbf", exp_required=True)
    return claims


def verify_receipt(keys, token: str, nonce: str) -> dict:
    claims = verify_token(keys, token)
    if claims.get("typ") != "receipt":
        raise Unverified(f"a {claims.get('typ', 'license')} token, not a receipt")
    if not same(claims.get("nonce"), nonce):
        raise Unverified("the receipt does not echo this request's nonce (replayed or forged)")
    check_window(claims, "iat", exp_required=True)
    return claims


def verify_license_token(keys, token: str) -> dict:
    claims = verify_token(keys, token)
    if "typ" in claims:
        raise Unverified(f"a {claims['typ']} token, not a license")
    # A perpetual license has no exp: that is not an error.
    check_window(claims, "nbf", exp_required=False)
    return claims


# --- HTTP -------------------------------------------------------------------


def request(method: str, url: str, body: dict | None = None) -> tuple[int, dict | None]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("accept", "application/json")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            text = resp.read()
            return resp.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            error = json.loads(text)
        except ValueError:
            raise Unverified(f"HTTP {e.code} without keymint's error body") from None
        raise Refused(e.code, error) from None


def segment(text: str) -> str:
    # Unreserved characters only: a fingerprint can never become "." or "..".
    return urllib.parse.quote(text, safe="-_~").replace(".", "%2E")


def activate(server, keys, key, fingerprint) -> tuple[int, dict, dict]:
    nonce = secrets.token_urlsafe(24)
    url = f"{server}/v1/licenses/{segment(key)}/machines/{segment(fingerprint)}"
    status, body = request("PUT", url, {"platform": sys.platform, "nonce": nonce})
    claims = verify_machine_file(keys, body["machine_file"], fingerprint, nonce)
    if canonical_key(claims["key"]) != canonical_key(key):
        raise Unverified(f"the machine file is for key {claims['key']}")
    if claims["machine"] != body["machine"]["id"]:
        raise Unverified("the body names another machine than the machine file")
    if (status == 201) != body["created"]:
        raise Unverified(f"HTTP {status} with created={body['created']}")
    return status, body, claims


def validate(server, keys, key, fingerprint, product=None) -> tuple[dict, dict]:
    nonce = secrets.token_urlsafe(24)
    ask = {"key": key, "nonce": nonce}
    if fingerprint:
        ask["fingerprint"] = fingerprint
    if product:
        ask["product"] = product
    _, body = request("POST", f"{server}/v1/licenses/validate", ask)
    # Tests only: pretend another nonce was sent (a replayed answer).
    expected = os.environ.get("KEYMINT_RECIPE_TEST_NONCE") or nonce
    receipt = verify_receipt(keys, body["receipt"], expected)
    if receipt["valid"] != body["valid"] or receipt["code"] != body["code"]:
        raise Unverified(
            f"body says {body['code']}/{body['valid']}, receipt {receipt['code']}/{receipt['valid']}"
        )
    if canonical_key(receipt["key"]) != canonical_key(key):
        raise Unverified(f"the receipt is for key {receipt['key']}")
    if receipt.get("fingerprint") != fingerprint:
        raise Unverified("the receipt is for another fingerprint")
    return body, receipt


# --- the program ------------------------------------------------------------


def read_arg(value: str) -> str:
    """`@path` reads a file, anything else is the value itself."""
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as f:
            return f.read().strip()
    return value.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["activate", "validate", "offline"])
    p.add_argument("--server", help="base URL, e.g. https://licenses.example.com")
    p.add_argument("--public-key", action="append", default=[], help="PASERK k4.public (repeatable)")
    p.add_argument("--kid", action="append", default=[], help="its PASERK id k4.pid (optional: checked)")
    p.add_argument("--key", help="the license key")
    p.add_argument("--fingerprint", required=True, help="this machine's fingerprint (8-255 chars)")
    p.add_argument("--product", help="the product id this program is")
    p.add_argument("--license-token", help="the license token (v4.public...) or @file, verified offline")
    p.add_argument("--save-machine-file", help="activate: write the machine file here")
    p.add_argument("--machine-file", help="offline: the stored machine file (or @file)")
    a = p.parse_args()
    if a.mode != "offline" and not (a.server and a.key):
        p.error("--server and --key are required to activate or validate")
    if a.mode == "offline" and not (a.public_key and a.machine_file):
        p.error("offline needs --public-key and --machine-file: no network is used")

    out: dict = {"mode": a.mode}
    server = (a.server or "").rstrip("/")
    try:
        keys = load_keys(server, a.public_key, a.kid)
        if a.license_token:
            lic = verify_license_token(keys, read_arg(a.license_token))
            out.update(license_token_ok=True, license_token_exp=lic.get("exp"))
        if a.mode == "offline":
            claims = verify_machine_file(keys, read_arg(a.machine_file), a.fingerprint)
            out.update(machine_file_ok=True, machine=claims["machine"], key=claims["key"],
                       entitlements=claims["entitlements"], machine_file_exp=claims["exp"])
            print(json.dumps(out))
            return 0
        if a.mode == "activate":
            status, body, claims = activate(server, keys, a.key, a.fingerprint)
            out.update(activated=True, created=status == 201, machine_file_ok=True,
                       machine=claims["machine"], machine_file_exp=claims["exp"])
            if a.save_machine_file:
                with open(a.save_machine_file, "w", encoding="utf-8") as f:
                    f.write(body["machine_file"])
        body, receipt = validate(server, keys, a.key, a.fingerprint, a.product)
        out.update(receipt_ok=True, code=receipt["code"], valid=receipt["valid"],
                   receipt_exp=receipt["exp"], access_until=body["access_until"],
                   warnings=body["warnings"])
        print(json.dumps(out))
        return 0 if receipt["valid"] else 1
    except Refused as e:
        out.update(refused=e.status, code=e.body.get("code"), error=e.body.get("error"))
        if "retry_after" in e.body:
            out["retry_after"] = e.body["retry_after"]
        print(json.dumps(out))
        return 1
    except Unverified as e:
        out.update(error=f"does not verify: {e}")
        print(json.dumps(out))
        return 3
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        out.update(error=f"cannot reach the license server (or read a file): {e}")
        print(json.dumps(out))
        return 3
    except (KeyError, TypeError, ValueError) as e:
        out.update(error=f"unexpected answer or bad input: {type(e).__name__}: {e}")
        print(json.dumps(out))
        return 3


if __name__ == "__main__":
    sys.exit(main())
