#!/usr/bin/env bash
# Installs everything kpi's tests and demo need on a fresh machine; quick when it is all there.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)        # pod network namespaces (src/sandbox/netns.ts)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux) # a mount namespace per pod process
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# what the tests and the demo run; the benchmarks build their own peers (tools.sh benchpeers) when run
bash scripts/tools.sh controlplane platform testpeers

