#!/usr/bin/env bash
# Builds keymint in release mode and measures it on SQLite and PostgreSQL,
# with the load generator on the same machine. Prints one Markdown table.
#
#   bench/run.sh                    # both databases, 10 s per measurement
#   DURATION=30 bench/run.sh        # longer measurements
#   DATABASES=sqlite bench/run.sh   # one database
#   LICENSES=2000 bench/run.sh      # fewer licenses for the licensing run (default 10,000)
#
# PostgreSQL: KEYMINT_BENCH_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/postgres) must be allowed to create
# databases; each run makes fresh ones and drops them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-32}
LICENSES=${LICENSES:-10000}
DATABASES=${DATABASES:-"sqlite postgres"}
PG_ADMIN_URL=${KEYMINT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_BASE=${PG_ADMIN_URL%/*}
STANDARD_SECRET=whsec_$(printf 'keymint-bench-standard-secret-01' | base64)

echo "building (release)..." >&2
cargo build --release -q -p keymint -p keymint-bench
BIN=$PWD/target/release/keymint
BENCH=$PWD/target/release/keymint-bench

work=$(mktemp -d)
server_pid=
created_dbs=()
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  for db in "${created_dbs[@]}"; do
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The last JSON line of a bench's output (json_first: the first).
json_field() { python3 -c "import json,sys; d=[json.loads(l) for l in sys.stdin if l.startswith('{')][-1]; print($1)"; }
json_first() { python3 -c "import json,sys; d=[json.loads(l) for l in sys.stdin if l.startswith('{')][0]; print($1)"; }

fresh_db_url() { # $1 = sqlite|postgres, $2 = name
  if [ "$1" = sqlite ]; then
    echo "sqlite://$work/$2/keymint.db"
  else
    local name="keymint_bench_$2_$$"
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $name" >/dev/null
    created_dbs+=("$name")
    echo "$PG_BASE/$name"
  fi
}

write_config() { # $1 = dir, $2 = port, $3 = db url
  mkdir -p "$1"
  cat > "$1/keymint.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
data_dir = "$1/data"
# Short, readable bench secrets on a loopback address.
allow_weak_secrets = true
[database]
url = "$3"
[email]
provider = "log"
# One load generator is one client address: the per-address limits of the
# licensing API would measure themselves.
[licensing.rate_limit]
enabled = false
[[endpoints]]
name = "gumroad"
kind = "gumroad"
secrets = ["bench-secret"]
[[endpoints]]
name = "stripe"
kind = "stripe"
secrets = ["whsec_bench_secret"]
[[endpoints]]
name = "standard"
kind = "standard"
secrets = ["$STANDARD_SECRET"]
[[products]]
id = "datatools-core"
name = "DataTools Core"
tier = "core"
key_prefix = "DT1"
duration = "365d"
[products.map]
gumroad = ["datatools-core"]
standard = ["datatools-core"]
TOML
}

declare -A R
for db in $DATABASES; do
  echo "== $db" >&2
  port=$(free_port)
  dir=$work/$db
  url=$(fresh_db_url "$db" server)
  write_config "$dir" "$port" "$url"
  base=http://127.0.0.1:$port

  R[$db,startup]=$("$BENCH" --json startup --bin "$BIN" --ready-url "$base/readyz" --runs 7 --args --config "$dir/keymint.toml" \
    | tee >(cat >&2) | json_field 'd["startup_ms_median"]')

  KEYMINT_LOG=info "$BIN" --config "$dir/keymint.toml" serve 2>"$dir/server.log" &
  server_pid=$!
  for _ in $(seq 1 300); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; sleep 0.05; done

  # The cost figures: server CPU (from /proc) and commits (SQLite: the
  # server's counters; PostgreSQL: xact_commit) from the first request until
  # every license minted has been emailed, per delivery.
  pg_stats=(); [ "$db" = postgres ] && pg_stats=(--database-url "$url")
  max=$("$BENCH" --json load --url "$base" --secret bench-secret --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --warmup "$WARMUP" --pid "$server_pid" "${pg_stats[@]}" | tee >(cat >&2))
  R[$db,max]=$(echo "$max" | json_first 'd["statuses"].get("200 ok",0)/d["seconds"]')
  R[$db,max_p99]=$(echo "$max" | json_first 'd["p99_ms"]')
  R[$db,cpu_per]=$(echo "$max" | json_field 'd["server_cpu_us_per_delivery"]')
  R[$db,commits_per]=$(echo "$max" | json_field 'd["commits_per_delivery"]')
  # The signed providers: the same closed loop, each request freshly signed.
  for kind in stripe standard; do
    secret=whsec_bench_secret; [ "$kind" = standard ] && secret=$STANDARD_SECRET
    out=$("$BENCH" --json load --url "$base" --kind "$kind" --secret "$secret" --concurrency "$CONCURRENCY" \
      --duration "$DURATION" --warmup "$WARMUP" | tee >(cat >&2))
    R[$db,max_$kind]=$(echo "$out" | json_field 'd["statuses"].get("200 ok",0)/d["seconds"]')
  done
  half=$(python3 -c "print(max(1, ${R[$db,max]} / 2))")
  open=$("$BENCH" --json load --url "$base" --secret bench-secret --rate "$half" \
    --duration "$DURATION" --warmup "$WARMUP" --duplicates 0.1 | tee >(cat >&2))
  R[$db,half_rate]=$half
  R[$db,half_p50]=$(echo "$open" | json_field 'd["p50_ms"]')
  R[$db,half_p99]=$(echo "$open" | json_field 'd["p99_ms"]')
  R[$db,half_p999]=$(echo "$open" | json_field 'd["p999_ms"]')
  R[$db,half_max]=$(echo "$open" | json_field 'd["max_ms"]')

  token=$("$BIN" --config "$dir/keymint.toml" admin-token create --name bench 2>/dev/null | tail -n 1)
  read_out=$("$BENCH" --json read --url "$base" --token "$token" --concurrency "$CONCURRENCY" --duration "$DURATION" | tee >(cat >&2))
  R[$db,read]=$(echo "$read_out" | json_field 'd["statuses"].get("200",0)/d["seconds"]')

  lic=$("$BENCH" --json licensing --url "$base" --token "$token" --licenses "$LICENSES" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --pid "$server_pid" | tee >(cat >&2))
  for f in healthz_per_s validate_per_s validate_share_pct validate_cpu_ms healthz_cpu_ms half_rate half_p50_ms half_p99_ms \
           activate_per_s activate_p99_ms activate_cpu_ms; do
    R[$db,lic_$f]=$(echo "$lic" | json_field "d['$f']")
  done

  hostile=$("$BENCH" --json hostile --url "$base" --pid "$server_pid" | tee >(cat >&2))
  R[$db,hostile_cpu]=$(echo "$hostile" | json_field 'd["cpu_ms_per_request"]')
  R[$db,hostile_p50]=$(echo "$hostile" | json_field 'd["p50_ms"]')
  R[$db,healthz_p99]=$(echo "$hostile" | json_field 'd["healthz_p99_ms"]')
  R[$db,healthz_max]=$(echo "$hostile" | json_field 'd["healthz_max_ms"]')

  R[$db,rss]=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$server_pid/status")
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=

  ceiling_url=$(fresh_db_url "$db" ceiling)
  mkdir -p "$work/ceiling"
  ceil=$("$BENCH" --json ceiling --database-url "$ceiling_url" --concurrency 10 --duration "$DURATION" | tee >(cat >&2))
  R[$db,ceiling]=$(echo "$ceil" | json_first 'd["rate"]')
  ceiling_url=$(fresh_db_url "$db" raw)
  raw=$("$BENCH" --json ceiling --raw --with-email --database-url "$ceiling_url" --concurrency "$CONCURRENCY" --duration "$DURATION" | tee >(cat >&2))
  R[$db,raw]=$(echo "$raw" | json_first 'd["rate"]')
  ceiling_url=$(fresh_db_url "$db" ceilmail)
  ceil=$("$BENCH" --json ceiling --with-email --database-url "$ceiling_url" --concurrency 10 --duration "$DURATION" | tee >(cat >&2))
  R[$db,ceiling_mail]=$(echo "$ceil" | json_first 'd["rate"]')
done

verify=$("$BENCH" --json verify --seconds 6 | tee >(cat >&2))
v_ours=$(echo "$verify" | json_field 'd["verify_per_s"]')
v_raw=$(echo "$verify" | json_field 'd["raw_ed25519_per_s"]')
v_share=$(echo "$verify" | json_field 'd["share_pct"]')

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo
echo "keymint $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d), $(nproc) cores ($cpu), load generator on the same machine;"
echo "${DURATION} s per measurement after ${WARMUP} s warm-up, ${CONCURRENCY} requests in flight (closed loop)."
echo
printf '| measure | target |'; for db in $DATABASES; do printf ' %s |' "$db"; done; echo
printf '|---|---|'; for db in $DATABASES; do printf -- '---|'; done; echo
# row LABEL TARGET FUNCTION: FUNCTION prints the cell for the database $1.
row() { printf '| %s | %s |' "$1" "$2"; for db in $DATABASES; do printf ' %s |' "$($3 "$db")"; done; echo; }
num() { printf '%.0f' "$1"; }
max() { num "${R[$1,max]}"; }
ceiling() { num "${R[$1,ceiling]}"; }
share() { python3 -c "print(f'{100*${R[$1,max]}/${R[$1,ceiling]}:.1f}%')"; }
ceiling_mail() { num "${R[$1,ceiling_mail]}"; }
share_mail() { python3 -c "print(f'{100*${R[$1,max]}/${R[$1,ceiling_mail]}:.1f}%')"; }
max_p99() { printf '%.1f' "${R[$1,max_p99]}"; }
max_stripe() { num "${R[$1,max_stripe]}"; }
max_standard() { num "${R[$1,max_standard]}"; }
half_rate() { num "${R[$1,half_rate]}"; }
half_lat() { printf '%.2f / %.2f / %.2f / %.1f' "${R[$1,half_p50]}" "${R[$1,half_p99]}" "${R[$1,half_p999]}" "${R[$1,half_max]}"; }
reads() { num "${R[$1,read]}"; }
rss() { echo "${R[$1,rss]}"; }
hostile_cpu() { printf '%.2f' "${R[$1,hostile_cpu]}"; }
hostile_lat() { printf '%.1f / %.1f / %.1f' "${R[$1,hostile_p50]}" "${R[$1,healthz_p99]}" "${R[$1,healthz_max]}"; }
startup() { printf '%.1f' "${R[$1,startup]}"; }
healthz() { num "${R[$1,lic_healthz_per_s]}"; }
validations() { num "${R[$1,lic_validate_per_s]}"; }
validate_share() { printf '%.1f%%' "${R[$1,lic_validate_share_pct]}"; }
validate_half() { printf '%.2f / %.2f at %.0f/s' "${R[$1,lic_half_p50_ms]}" "${R[$1,lic_half_p99_ms]}" "${R[$1,lic_half_rate]}"; }
validate_cpu() { printf '%.3f / %.3f' "${R[$1,lic_validate_cpu_ms]}" "${R[$1,lic_healthz_cpu_ms]}"; }
activations() { num "${R[$1,lic_activate_per_s]}"; }
activate_lat() { printf '%.1f / %.3f' "${R[$1,lic_activate_p99_ms]}" "${R[$1,lic_activate_cpu_ms]}"; }
cpu_per() { num "${R[$1,cpu_per]}"; }
commits_per() { printf '%.3f' "${R[$1,commits_per]}"; }
raw() { num "${R[$1,raw]}"; }
share_raw() { python3 -c "print(f'{100*${R[$1,max]}/${R[$1,raw]}:.1f}%')"; }
row "max sustained ingest (fully processed deliveries/s, closed loop)" ">= 5,000 SQLite, >= 4,000 PostgreSQL" max
row "server CPU per fully processed delivery (µs, /proc, until every license is emailed)" "<= 150" cpu_per
row "durable commits per delivery at saturation (SQLite: server's count; PostgreSQL: xact_commit)" "<= 0.25" commits_per
row "raw ceiling: the same rows through the database library alone, batched, fsynced (/s)" "" raw
row "keymint's share of the raw ceiling" ">= 60%" share_raw
row "database ceiling: the same ingest writes without HTTP (/s)" "" ceiling
row "keymint's share of that ceiling" "" share
row "database ceiling with the email worker's writes too (/s)" "" ceiling_mail
row "keymint's share of that ceiling" "" share_mail
row "p99 at max load (ms)" "" max_p99
row "max sustained ingest, Stripe-signed (/s)" "" max_stripe
row "max sustained ingest, Standard Webhooks-signed (/s)" "" max_standard
row "open loop at half the max (req/s, 10% duplicates)" "" half_rate
row "latency at half the max: p50 / p99 / p99.9 / max (ms)" "p99 <= 20" half_lat
row "admin get by key (req/s)" "" reads
row "GET /healthz, closed loop (req/s): the HTTP floor" "" healthz
row "validations (key + fingerprint + nonce, receipt signed), closed loop (/s)" "" validations
row "validations as a share of the /healthz floor" ">= 50%" validate_share
row "validation latency at half that rate: p50 / p99 (ms)" "p99 <= 5" validate_half
row "server CPU per validation / per /healthz (ms)" "" validate_cpu
row "activations (new machine, machine file signed), closed loop (/s)" "" activations
row "activation p99 (ms) / server CPU per activation (ms)" "" activate_lat
row "forged Stripe delivery (10,000 v1= entries, 250 KiB): server CPU per rejection (ms)" "a few ms" hostile_cpu
row "forged deliveries: their p50 / /healthz p99 / /healthz max meanwhile (ms)" "" hostile_lat
row "peak resident memory of the server (MiB)" "<= 64" rss
row "start to ready, median of 7 runs (ms)" "<= 150 on SQLite" startup
echo "| offline verification, one core: keymint-license / raw Ed25519 | >= 90% | ${v_ours%.*}/s / ${v_raw%.*}/s = $(printf %.1f "$v_share")% (both) |"
