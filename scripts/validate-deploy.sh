#!/usr/bin/env bash
# Check the deployment files with the tools' own code, without Docker or a cluster:
# builds deploy-validate (infra/compose/validate: compose-go, the library `docker
# compose` uses, and the kustomize API that `kubectl apply -k` runs; Go modules come
# from the Go module proxy once and are cached) into $AGENTSTREAM_HOME/bin, then loads
# infra/compose/docker-compose.yml and builds every infra/k8s overlay with it.
# tests/unit/test_deploy_validate.py runs the same binary (and skips those tests
# without it), so run this before the tests. Needs Go >= 1.26.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v go >/dev/null; then
    echo "validate-deploy: no Go toolchain (go >= 1.26 is needed to build deploy-validate)" >&2
    exit 1
fi
home=${AGENTSTREAM_HOME:-$PWD/.agentstream}
mkdir -p "$home/bin"
# -trimpath and no VCS stamp: the same sources give the same binary wherever built.
(cd infra/compose/validate && go build -trimpath -buildvcs=false -o "$home/bin/deploy-validate" .)

"$home/bin/deploy-validate" compose infra/compose/docker-compose.yml >/dev/null
echo "compose: infra/compose/docker-compose.yml loads"
for overlay in infra/k8s/overlays/*/; do
    count=$("$home/bin/deploy-validate" kustomize "$overlay" | grep -c '^kind:')
    echo "kustomize: ${overlay%/} builds ($count objects)"
done
