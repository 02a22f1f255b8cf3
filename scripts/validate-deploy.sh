#!/usr/bin/env bash
# Check the deployment files with the tools' own code, without Docker or a cluster:
# - builds deploy-validate (infra/compose/validate: compose-go, the library `docker
#   compose` uses, and the kustomize API that `kubectl apply -k` runs; Go modules come
#   from the Go module proxy once and are cached) into $AGENTSTREAM_HOME/bin;
# - compiles StrimziCheck (infra/k8s/strimzi-check: Strimzi's API model, io.strimzi:api
#   from Maven Central) into $AGENTSTREAM_HOME/strimzi-check;
# then loads infra/compose/docker-compose.yml, builds every infra/k8s overlay and
# checks its Strimzi resources. tests/unit/test_deploy_validate.py runs the same tools
# (and skips those tests without them), so run this before the tests.
# Needs Go >= 1.26, a JDK >= 17 and Maven.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in go javac mvn; do
    if ! command -v "$tool" >/dev/null; then
        echo "validate-deploy: $tool not found (needs Go >= 1.26, a JDK >= 17 and Maven)" >&2
        exit 1
    fi
done
home=${AGENTSTREAM_HOME:-$PWD/.agentstream}
mkdir -p "$home/bin"
# -trimpath and no VCS stamp: the same sources give the same binary wherever built.
(cd infra/compose/validate && go build -trimpath -buildvcs=false -o "$home/bin/deploy-validate" .)

strimzi=$home/strimzi-check
mkdir -p "$strimzi/classes"
mvn -B -q -Dstyle.color=never -f infra/k8s/strimzi-check/pom.xml dependency:build-classpath \
    -Dmdep.outputFile="$strimzi/classpath.txt" >/dev/null
javac -d "$strimzi/classes" -cp "$(cat "$strimzi/classpath.txt")" \
    infra/k8s/strimzi-check/StrimziCheck.java
strimzi_check() {
    java -Dslf4j.internal.verbosity=ERROR -cp "$strimzi/classes:$(cat "$strimzi/classpath.txt")" \
        StrimziCheck "$@"
}

"$home/bin/deploy-validate" compose infra/compose/docker-compose.yml >/dev/null
echo "compose: infra/compose/docker-compose.yml loads"
built=$(mktemp -d)
trap 'rm -rf "$built"' EXIT
for overlay in infra/k8s/overlays/*/; do
    name=$(basename "$overlay")
    "$home/bin/deploy-validate" kustomize "$overlay" >"$built/$name.yaml"
    echo "kustomize: ${overlay%/} builds ($(grep -c '^kind:' "$built/$name.yaml") objects)"
    echo -n "strimzi: ${overlay%/}: "
    strimzi_check "$built/$name.yaml"
done
