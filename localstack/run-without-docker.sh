#!/usr/bin/env bash
# LocalStack's open-source core on the host, for machines without a Docker engine, then the same
# ready hook as the container. It runs on the newest python3.X it finds (LocalStack wants 3.10+;
# set PYTHON to choose one), with the pins below (they were what worked). Its venv, log and pid
# file live outside the checkout, in $LOCALSTACK_HOME (default ~/.local/state/ssb-s3-localstack).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${LOCALSTACK_HOME:-${XDG_STATE_HOME:-$HOME/.local/state}/ssb-s3-localstack}"
venv="${LOCALSTACK_VENV:-$state/venv}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
      python="$candidate"
      break
    fi
  done
fi
[ -n "$python" ] || { echo "error: no Python 3.10 or newer on PATH (set PYTHON=/path/to/python3)" >&2; exit 1; }
mkdir -p "$state"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check 'localstack-core[runtime]==2026.3.0' 'cbor2<6' \
  'pyopenssl<26' 'cryptography<47' service_identity boto3
SERVICES=s3,sqs DNS_ADDRESS=0 EAGER_SERVICE_LOADING=1 GATEWAY_LISTEN=127.0.0.1:4566 \
  "$venv/bin/python" -m localstack.runtime.main > "$state/localstack.log" 2>&1 &
echo $! > "$state/localstack.pid"
for _ in $(seq 1 120); do
  curl -fs http://127.0.0.1:4566/_localstack/health >/dev/null && break
  sleep 1
done
AWS_ENDPOINT_URL=http://127.0.0.1:4566 "$venv/bin/python" "$here/init/ready.d/10-tree.py"
echo "LocalStack on http://127.0.0.1:4566 (pid $(cat "$state/localstack.pid"), log $state/localstack.log);" \
  "stop with: kill \$(cat $state/localstack.pid)"
