#!/usr/bin/env bash
# Conformance run of the signer agent against the Web3Signer eth2 OpenAPI, with the
# schema-driven fuzzer schemathesis (PyPI, pinned below).
#
# What it does:
#   1. installs schemathesis into a virtualenv under ~/.cache (once);
#   2. builds the workspace and starts the local lab (3 coordinators, 2 agents, no duties, no
#      handover: agent-eu holds signing authority) in a temporary directory;
#   3. fuzzes agent-eu with the spec in the vectors folder ($FAILOVER_VECTORS, default
#      ../shared/vectors), in two passes:
#      - all modes (examples, coverage, fuzzing): no 5xx, every status code, content type and
#        body as the spec documents them;
#      - negative mode only (every generated request breaks the schema; the examples phase,
#        which replays the spec's valid examples, is left out): each must be refused with a
#        4xx, and the agent's signature counter must not move: nothing is signed from an
#        invalid request;
#   4. stops the lab.
#
# Operations: sign, publicKeys, upcheck, healthcheck. Not fuzzed: `/api/v1/eth2/highWatermark`
# and `/reload` (Web3Signer-specific, not implemented by the agent: they answer 404), and the
# keymanager paths (their own spec, tested in signer-agent/tests/keymanager.rs).
# `positive_data_acceptance` is not checked: a request valid by the schema may rightly be
# refused (another network, no authority, slashing protection).
#
# Usage: signer-agent/conformance/schemathesis.sh [MAX_EXAMPLES]   (default 200 per operation)
set -euo pipefail
cd "$(dirname "$0")/../.."
MAX_EXAMPLES=${1:-200}
VECTORS=${FAILOVER_VECTORS:-../shared/vectors}
SPEC="$VECTORS/web3signer/openapi-specs/eth2/web3signer.yaml"
if [ ! -f "$SPEC" ]; then
  echo "missing $SPEC: set FAILOVER_VECTORS, or fetch the pinned vectors as README.md ('Test vectors') says" >&2
  exit 1
fi
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/failover-schemathesis"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet schemathesis==4.32.5
fi
ST="$VENV/bin/schemathesis"

cargo build --workspace --quiet
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
LAB="$WORK/lab"
# With --keep-running the lab stays in the foreground until `failover-lab down`.
"$TARGET/debug/failover-lab" --dir "$LAB" --keep-running --no-duties --no-handover --validators 4 \
  > "$WORK/lab.out" 2>&1 &
trap '"$TARGET/debug/failover-lab" down --dir "$LAB" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 1 240); do
  grep -q "lab keeps running" "$WORK/lab.out" 2>/dev/null && break
  if grep -q "RESULT FAIL" "$WORK/lab.out" 2>/dev/null; then cat "$WORK/lab.out" >&2; exit 1; fi
  sleep 0.5
done
grep -q "lab keeps running" "$WORK/lab.out" || { echo "the lab did not come up:" >&2; cat "$WORK/lab.out" >&2; exit 1; }

read -r AGENT PUBKEY < <(python3 - "$LAB/lab.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
agent = next(a for a in m["agents"] if a["id"] == "agent-eu")
print(agent["url"], m["validators"][0]["pubkey"])
PY
)
signatures() {
  curl -fsS "$AGENT/metrics" | awk '$1 == "signer_agent_signatures_total" { print $2 }'
}

# The identifier of every sign request is a key the agent holds, so bodies reach the parser.
cat > "$WORK/schemathesis.toml" <<TOML
[[operations]]
include-name = "POST /api/v1/eth2/sign/{identifier}"
parameters = { identifier = "$PUBKEY" }
TOML

INCLUDE='^/(api/v1/eth2/(sign/\{identifier\}|publicKeys)|upcheck|healthcheck)$'
COMMON=(--url "$AGENT" --include-path-regex "$INCLUDE" --max-examples "$MAX_EXAMPLES"
        --seed 3076 --generation-database none --no-color --report junit,har --report-dir "$WORK/report")

echo "== pass 1: all modes, spec conformance"
"$ST" --config-file "$WORK/schemathesis.toml" run "$SPEC" "${COMMON[@]}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance

echo "== pass 2: negative mode, nothing signed"
before=$(signatures)
# The examples phase replays the spec's own (valid) examples in every mode: left out here.
"$ST" --config-file "$WORK/schemathesis.toml" run "$SPEC" "${COMMON[@]}" --mode negative \
  --phases coverage,fuzzing --checks not_a_server_error,negative_data_rejection
after=$(signatures)
echo "signatures before the negative pass: $before, after: $after"
if [ "$before" != "$after" ]; then
  echo "FAIL: the agent signed during the negative pass; requests and answers are in $WORK/report (HAR)" >&2
  exit 1
fi
echo "PASS: schemathesis conformance (reports in $WORK/report)"
