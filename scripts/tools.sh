#!/usr/bin/env bash
# Builds the third-party tools kpi's tests, demo and benchmarks run, from Go modules (never prebuilt
# binaries), into ~/.cache/kpi/<tool>-<version>/bin/<tool>. A tool already there is skipped, so a warm
# machine passes through in a moment. Versions are pinned in tools/versions.env (src/sandbox/tools.ts
# reads the same file).
#
#   bash scripts/tools.sh                  # every group
#   bash scripts/tools.sh controlplane     # kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok
#   bash scripts/tools.sh peers            # crane, toxiproxy-server, kubectl (the peer for install benchmarks: kapp is not reachable),
#                                          # ggcr-registry (go-containerregistry's registry with the OCI referrers API),
#                                          # floor (tools/floor: the benchmark's minimal blob copier)
#   bash scripts/tools.sh crane floor      # single tools by name
#
# KPI_CACHE_DIR overrides ~/.cache/kpi. Cold builds of Kubernetes take many minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tools/versions.env
. "$root/tools/versions.env"
cache=${KPI_CACHE_DIR:-$HOME/.cache/kpi}

# imgpkg and kapp (carvel.dev) are not served by the Go module proxy this project may reach, so they
# are not built; the benchmarks that compare with them skip when src/sandbox/tools.ts finds no binary.
groups_all=(controlplane peers)
tools_controlplane=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)
tools_peers=(crane toxiproxy-server kubectl ggcr-registry floor)

version_of() {
  case $1 in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    crane|ggcr-registry) echo "$CRANE_VERSION" ;;
    toxiproxy-server) echo "$TOXIPROXY_VERSION" ;;
    floor) echo "$FLOOR_VERSION" ;;
    *) echo "tools.sh: unknown tool $1" >&2; exit 2 ;;
  esac
}

# The wrapper modules pin versions in their go.mod too; a mismatch would cache a binary under the
# wrong name, so refuse it.
check_pin() { # module-dir module version
  if ! grep -Eq "^[[:space:]]*(require )?$2 $3( |$)" "$root/tools/$1/go.mod"; then
    echo "tools.sh: tools/$1/go.mod does not require $2 $3 as tools/versions.env says; update both together" >&2
    exit 1
  fi
}

export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
# Two cores: build one tool at a time, with the compiler's default parallelism.

# go build / go install one tool into $tmp/bin (plus any data files it needs beside bin/).
build_one() { # tool version tmpdir
  local tool=$1 version=$2 tmp=$3/bin
  mkdir -p "$tmp"
  case $tool in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl)
      check_pin k8s k8s.io/kubernetes "$version"
      local minor=${version#v1.}; minor=${minor%%.*}
      local x="" key
      for key in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        x+=" -X $key.gitVersion=$version -X $key.gitMajor=1 -X $key.gitMinor=$minor"
        x+=" -X $key.gitTreeState=clean -X $key.buildDate=1970-01-01T00:00:00Z"
      done
      (cd "$root/tools/k8s" && go build -trimpath -ldflags "-s -w$x" -o "$tmp/$tool" "k8s.io/kubernetes/cmd/$tool")
      ;;
    etcd)
      check_pin etcd go.etcd.io/etcd/server/v3 "$version"
      (cd "$root/tools/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .)
      ;;
    kwok)
      GOBIN=$tmp go install -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${version#v}" "sigs.k8s.io/kwok/cmd/kwok@$version"
      # The kwok binary has no built-in stages (kwokctl embeds them); keep the node and pod lifecycle
      # stages KWOK ships in its module beside the binary, for src/sandbox/controlplane.ts.
      local src
      src=$(go mod download -json "sigs.k8s.io/kwok@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
      mkdir -p "$3/stages"
      cp "$src/kustomize/stage/node/fast/node-initialize.yaml" \
        "$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
        "$src/kustomize/stage/pod/fast/pod-ready.yaml" \
        "$src/kustomize/stage/pod/fast/pod-complete.yaml" \
        "$src/kustomize/stage/pod/fast/pod-delete.yaml" "$3/stages/"
      chmod 644 "$3"/stages/*.yaml
      ;;
    crane)
      GOBIN=$tmp go install -trimpath -ldflags "-s -w" "github.com/google/go-containerregistry/cmd/crane@$version"
      ;;
    toxiproxy-server)
      GOBIN=$tmp go install -trimpath -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$version" \
        "github.com/Shopify/toxiproxy/v2/cmd/server@$version"
      mv "$tmp/server" "$tmp/toxiproxy-server"
      ;;
    ggcr-registry)
      # the module crane comes from, at the same pin: its pkg/registry with the referrers API on
      check_pin ggcr-registry github.com/google/go-containerregistry "$version"
      (cd "$root/tools/ggcr-registry" && go build -trimpath -ldflags "-s -w" -o "$tmp/ggcr-registry" .)
      ;;
    floor)
      # the benchmark's own (standard library only); FLOOR_VERSION is bumped when it changes
      (cd "$root/tools/floor" && go build -trimpath -ldflags "-s -w" -o "$tmp/floor" .)
      ;;
  esac
}

ensure() { # tool
  local tool=$1 version dir
  version=$(version_of "$tool")
  dir="$cache/$tool-$version"
  [ -x "$dir/bin/$tool" ] && return 0
  if ! command -v go >/dev/null 2>&1; then
    echo "tools.sh: building $tool needs Go (1.26 or later) on PATH" >&2
    exit 1
  fi
  echo "building $tool $version (cold build, takes minutes)..."
  local start=$SECONDS tmp
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.build-$tool.XXXXXX")
  # go's download chatter goes to a log, shown only when the build fails
  local log="$cache/build-$tool.log"
  # a subshell, so that an exit in build_one (check_pin) lands here and is reported, not silent
  # a heartbeat while Go works, so a cold build never sits silent for minutes
  ( while sleep 30; do echo "  ... still building $tool ($((SECONDS - start))s)"; done ) &
  local beat=$!
  local ok=0
  (build_one "$tool" "$version" "$tmp") >"$log" 2>&1 || ok=$?
  kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null || true
  if [ "$ok" -ne 0 ]; then
    rm -rf "$tmp"
    tail -n 40 "$log" >&2
    echo "tools.sh: FAILED to build $tool $version after $((SECONDS - start))s (full output: $log)" >&2
    exit 1
  fi
  # Move into place only once complete, so an interrupted build is never taken for a cached one.
  rm -rf "$dir"
  mv "$tmp" "$dir"
  chmod 755 "$dir"
  rm -f "$log"
  echo "built $tool $version in $((SECONDS - start))s"
}

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=("${groups_all[@]}")
for g in "${groups[@]}"; do
  case $g in
    controlplane) for t in "${tools_controlplane[@]}"; do ensure "$t"; done ;;
    peers) for t in "${tools_peers[@]}"; do ensure "$t"; done ;;
    crane|toxiproxy-server|kubectl|ggcr-registry|floor|kube-apiserver|kube-controller-manager|kube-scheduler|etcd|kwok) ensure "$g" ;;
    *) echo "tools.sh: unknown group '$g' (groups: ${groups_all[*]})" >&2; exit 2 ;;
  esac
done
echo "tools: $cache"
