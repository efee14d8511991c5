#!/usr/bin/env bash
# Installs everything kpi's tests and demo need on a fresh machine; quick when it is all there.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ -f scripts/tools.sh ]; then bash scripts/tools.sh; fi
