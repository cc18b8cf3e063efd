#!/usr/bin/env bash
# LocalStack's open-source core on the host, for machines without a Docker engine. It needs
# Python 3.13 and these pins (they were what worked); then the same ready hook as the container.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${LOCALSTACK_VENV:-$here/.venv-localstack}"
python3.13 -m venv "$venv"
"$venv/bin/pip" install -q 'localstack-core[runtime]==2026.3.0' 'cbor2<6' 'pyopenssl<26' 'cryptography<47' \
  service_identity boto3
SERVICES=s3,sqs DNS_ADDRESS=0 EAGER_SERVICE_LOADING=1 GATEWAY_LISTEN=127.0.0.1:4566 \
  "$venv/bin/python" -m localstack.runtime.main > "$here/localstack.log" 2>&1 &
echo $! > "$here/localstack.pid"
for _ in $(seq 1 120); do
  curl -fs http://127.0.0.1:4566/_localstack/health >/dev/null && break
  sleep 1
done
AWS_ENDPOINT_URL=http://127.0.0.1:4566 "$venv/bin/python" "$here/init/ready.d/10-tree.py"
echo "LocalStack on http://127.0.0.1:4566 (pid $(cat "$here/localstack.pid")); stop with: kill \$(cat $here/localstack.pid)"
