#!/usr/bin/env bash
# Builds the third-party tools kpi's tests, demo and benchmarks run, from Go modules (never prebuilt
# binaries), into <cache>/<tool>-<version>/bin/<tool>. A tool already there is skipped, so a warm
# machine passes through in a moment. Versions are pinned in tools/versions.env (src/sandbox/tools.ts
# reads the same file).
#
#   bash scripts/tools.sh                  # every group, controlplane first
#   bash scripts/tools.sh controlplane     # kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok
#   bash scripts/tools.sh platform         # kpack's controller and webhook (one cache dir per kpack version:
#                                          # kpack-<version>/bin/{controller,webhook}), cert-injection-webhook
#                                          # (bin/{webhook,setup-ca-certs}), kp (the kpack CLI)
#   bash scripts/tools.sh testpeers        # what the tests run beside kpi: crane, toxiproxy-server, kubectl,
#                                          # ggcr-registry (go-containerregistry's registry with the OCI referrers
#                                          # API), imgpkg (reads kpi's ImagesLock)
#   bash scripts/tools.sh benchpeers       # what only the benchmarks run: floor (tools/floor: the benchmark's
#                                          # minimal blob copier), kapp, helm (4), regctl, oras
#   bash scripts/tools.sh peers            # testpeers and benchpeers
#   bash scripts/tools.sh crane kpack      # single tools by name
#   bash scripts/tools.sh where            # prints the cache directory, builds nothing
#
# Each tool comes from `go install MODULE@VERSION` through the Go module proxy when the proxy serves it.
# The proxy this project may reach refuses kpack, kpack-cli, cert-injection-webhook, imgpkg and kapp;
# for those the build falls back to the source snapshots in KPI_UPSTREAM_DIR (default ../shared/upstream
# beside the checkout, see its README), unpacked into a temporary directory under the cache and removed
# after the build. Sources never enter the repository.
#
# The cache is $KPI_CACHE_DIR, else $XDG_CACHE_HOME/kpi, else ~/.cache/kpi (src/cache-dir.ts's rule).
# Cold builds of Kubernetes and kpack take many minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tools/versions.env
. "$root/tools/versions.env"
cache=${KPI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kpi}

upstream=${KPI_UPSTREAM_DIR:-$root/../shared/upstream}

groups_all=(controlplane platform testpeers benchpeers)
tools_controlplane=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)
tools_platform=(kpack cert-injection-webhook kp)
# setup.sh (npm test, CI) builds controlplane, platform and testpeers; the benchmarks build benchpeers
# themselves when they run, so a cold CI run does not spend minutes on Helm and kapp.
tools_testpeers=(crane toxiproxy-server kubectl ggcr-registry imgpkg)
tools_benchpeers=(floor kapp helm regctl oras)
tools_peers=("${tools_testpeers[@]}" "${tools_benchpeers[@]}")

# The versions of a tool, one cache dir each (kpack: every version the sample platform stands for).
versions_of() {
  case $1 in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    crane) echo "$CRANE_VERSION" ;;
    ggcr-registry) echo "$GGCR_REGISTRY_VERSION" ;;
    toxiproxy-server) echo "$TOXIPROXY_VERSION" ;;
    floor) echo "$FLOOR_VERSION" ;;
    kpack) echo "${KPACK_VERSIONS//,/ }" ;;
    cert-injection-webhook) echo "$CERT_INJECTION_WEBHOOK_VERSION" ;;
    kp) echo "$KP_VERSION" ;;
    imgpkg) echo "$IMGPKG_VERSION" ;;
    kapp) echo "$KAPP_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    regctl) echo "$REGCTL_VERSION" ;;
    oras) echo "$ORAS_VERSION" ;;
    *) echo "tools.sh: unknown tool $1" >&2; exit 2 ;;
  esac
}

# The binaries a tool's cache dir holds in bin/ (src/sandbox/tools.ts knows the same).
bins_of() {
  case $1 in
    kpack) echo controller webhook ;;
    cert-injection-webhook) echo webhook setup-ca-certs ;;
    *) echo "$1" ;;
  esac
}

# What `go install` asks the proxy for: a version, or for a snapshot named by `git describe`
# (v0.6.6-1-g8c5cf48) the commit it stands for.
query_of() { # version
  if [[ $1 =~ -g([0-9a-f]{7,40})$ ]]; then echo "${BASH_REMATCH[1]}"; else echo "$1"; fi
}

# Builds from the proxy with `go install MODULE/cmd@VERSION` (how an ordinary machine gets these) and
# returns 0; returns 1 when that fails, so that a tool with a source snapshot falls back to it. A
# refusal shows in many places (the module zip, its @v/list for the deprecation check, the checksum
# database), so any failure falls back; its output stays in the log above the snapshot build's.
from_proxy() { # bindir module version ldflags package...
  local bindir=$1 module=$2 version=$3 ldflags=$4
  shift 4
  local query pkgs=() p
  query=$(query_of "$version")
  for p in "$@"; do pkgs+=("$p@$query"); done
  # outside any go.mod, so that only the proxy decides
  if (cd "$bindir" && GOBIN=$bindir go install -trimpath -ldflags "-s -w $ldflags" "${pkgs[@]}"); then return 0; fi
  echo "tools.sh: go install $module@$query failed (the Go module proxy refuses it?)"
  return 1
}

# Unpacks <project>-<version without v>.tar.gz from the snapshots into WORK and prints the source dir.
snapshot() { # project version work
  local tarball="$upstream/$1-${2#v}.tar.gz"
  if [ ! -f "$tarball" ]; then
    echo "tools.sh: no $tarball (KPI_UPSTREAM_DIR names the directory of source snapshots)" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$3"
  echo "$3/$1-${2#v}"
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

# Runs in a subshell whose caller tests its status, where `set -e` does not apply: every step that
# can fail ends the subshell itself (`|| exit 1`) or is the last command of its case.
# go build / go install one tool into $tmp/bin (plus any data files it needs beside bin/). Sources
# unpacked from snapshots go to $3/src, which ensure removes before moving $3 into place.
build_one() { # tool version tmpdir
  local tool=$1 version=$2 tmp=$3/bin src=$3/src
  mkdir -p "$tmp" "$src"
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
      check_pin ggcr-registry github.com/google/go-containerregistry "${version%-r*}"
      (cd "$root/tools/ggcr-registry" && go build -trimpath -ldflags "-s -w" -o "$tmp/ggcr-registry" .)
      ;;
    floor)
      # the benchmark's own (standard library only); FLOOR_VERSION is bumped when it changes
      (cd "$root/tools/floor" && go build -trimpath -ldflags "-s -w" -o "$tmp/floor" .)
      ;;
    kpack)
      # the ldflags kpack's release (hack/build.sh, ko) sets: its version and the build pod commands
      local p=github.com/pivotal/kpack/pkg/apis/build/v1alpha2
      local x="-X github.com/pivotal/kpack/cmd.Version=${version#v} -X $p.CompletionCommand=/ko-app/completion"
      x+=" -X $p.PrepareCommand=/ko-app/build-init -X $p.RebaseCommand=/ko-app/rebase"
      from_proxy "$tmp" github.com/pivotal/kpack "$version" "$x" \
        github.com/pivotal/kpack/cmd/controller github.com/pivotal/kpack/cmd/webhook && return
      local dir
      dir=$(snapshot kpack "$version" "$src") || exit 1
      (cd "$dir" && go build -trimpath -ldflags "-s -w $x" -o "$tmp/" ./cmd/controller ./cmd/webhook)
      ;;
    kp|cert-injection-webhook)
      local module project pkgs x
      if [ "$tool" = kp ]; then
        module=github.com/buildpacks-community/kpack-cli project=kpack-cli pkgs=(./cmd/kp)
        x="-X $module/pkg/rootcommand.Version=${version#v}"
      else
        module=github.com/vmware-tanzu/cert-injection-webhook project=cert-injection-webhook
        pkgs=(./cmd/webhook ./cmd/setup-ca-certs) x=""
      fi
      from_proxy "$tmp" "$module" "$version" "$x" "${pkgs[@]/#./$module}" && return
      # Both require github.com/pivotal/kpack, which the proxy refuses too: point it at the snapshot
      # of the newest kpack version tools/versions.env names.
      local dir kpack
      dir=$(snapshot "$project" "$version" "$src") || exit 1
      kpack=$(snapshot kpack "${KPACK_VERSIONS##*,}" "$src") || exit 1
      (cd "$dir" && go mod edit -replace "github.com/pivotal/kpack=$kpack" &&
        GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w $x" -o "$tmp/" "${pkgs[@]}")
      ;;
    imgpkg)
      local x="-X carvel.dev/imgpkg/pkg/imgpkg/cmd.Version=${version#v}"
      from_proxy "$tmp" carvel.dev/imgpkg "$version" "$x" carvel.dev/imgpkg/cmd/imgpkg && return
      local dir
      dir=$(snapshot imgpkg "$version" "$src") || exit 1
      (cd "$dir" && go build -mod=vendor -trimpath -ldflags "-s -w $x" -o "$tmp/imgpkg" ./cmd/imgpkg)
      ;;
    kapp)
      local module=github.com/vmware-tanzu/carvel-kapp
      local x="-X $module/pkg/kapp/version.Version=${version#v}"
      from_proxy "$tmp" "$module" "$version" "$x" "$module/cmd/kapp" && return
      local dir
      dir=$(snapshot kapp "$version" "$src") || exit 1
      (cd "$dir" && go build -mod=vendor -trimpath -ldflags "-s -w $x" -o "$tmp/kapp" ./cmd/kapp)
      ;;
    helm)
      # helm's Makefile stamps its version this way; without it `helm version` says v4.x-dev
      from_proxy "$tmp" helm.sh/helm/v4 "$version" "-X helm.sh/helm/v4/internal/version.version=$version" \
        helm.sh/helm/v4/cmd/helm
      ;;
    regctl)
      from_proxy "$tmp" github.com/regclient/regclient "$version" "" github.com/regclient/regclient/cmd/regctl
      ;;
    oras)
      from_proxy "$tmp" oras.land/oras "$version" "" oras.land/oras/cmd/oras
      ;;
  esac
}

built() { # tool dir: every binary of the tool is in dir/bin
  local b
  for b in $(bins_of "$1"); do [ -x "$2/bin/$b" ] || return 1; done
}

ensure() { # tool: each of its versions
  local v
  for v in $(versions_of "$1"); do
    ensure_one "$1" "$v"
    if [ "$1" = kpack ]; then kpack_config "$v"; fi
  done
}

# kpack's own release configuration (config/*.yaml, ytt-annotated YAML) beside its binaries, in
# kpack-<version>/config: test/kpack-release.test.ts compares what kpi renders with it. From the
# module cache when the proxy serves kpack, else from the snapshot; a cache built before this step
# gets it without a rebuild.
kpack_config() { # version
  local dir="$cache/kpack-$1" tmp src
  [ -f "$dir/config/controller.yaml" ] && return 0
  tmp=$(mktemp -d "$cache/.config-kpack.XXXXXX")
  # a refusal (or no go) is not an error here: the snapshot is the fallback
  src=$(cd "$tmp" && go mod download -json "github.com/pivotal/kpack@$1" 2>/dev/null | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || src=
  if [ -n "$src" ] && [ -d "$src/config" ]; then
    cp -r "$src/config" "$tmp/config"
  elif [ -f "$upstream/kpack-${1#v}.tar.gz" ]; then
    tar -xzf "$upstream/kpack-${1#v}.tar.gz" -C "$tmp" "kpack-${1#v}/config" && mv "$tmp/kpack-${1#v}/config" "$tmp/config" || true
  fi
  if [ ! -f "$tmp/config/controller.yaml" ]; then
    rm -rf "$tmp"
    echo "tools.sh: kpack $1's config/ is neither in the module cache nor in $upstream" >&2
    exit 1
  fi
  chmod -R u+w,go+r "$tmp/config"
  rm -rf "$dir/config"
  mv "$tmp/config" "$dir/config"
  rm -rf "$tmp"
}

ensure_one() { # tool version
  local tool=$1 version=$2 dir
  dir="$cache/$tool-$version"
  built "$tool" "$dir" && return 0
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
  ( while sleep 30; do echo "  ... still building $tool $version ($((SECONDS - start))s)"; done ) &
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
  rm -rf "$tmp/src"
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
    where) echo "$cache"; exit 0 ;; # the cache directory, nothing built
    controlplane) for t in "${tools_controlplane[@]}"; do ensure "$t"; done ;;
    platform) for t in "${tools_platform[@]}"; do ensure "$t"; done ;;
    testpeers) for t in "${tools_testpeers[@]}"; do ensure "$t"; done ;;
    benchpeers) for t in "${tools_benchpeers[@]}"; do ensure "$t"; done ;;
    peers) for t in "${tools_peers[@]}"; do ensure "$t"; done ;;
    *)
      if [[ " ${tools_controlplane[*]} ${tools_platform[*]} ${tools_peers[*]} " == *" $g "* ]]; then ensure "$g"
      else echo "tools.sh: unknown group or tool '$g' (groups: ${groups_all[*]} peers)" >&2; exit 2; fi ;;
  esac
done
echo "tools: $cache"
