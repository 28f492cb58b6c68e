#!/usr/bin/env bash
# Everything this machine needs before the test suite can run, in one place: `npm test` runs it
# (package.json "pretest") and .ci/run runs it, so a fresh machine fails or succeeds the same way.
#   scripts/test-setup.sh                      all of it: packages, Go, build, server binaries
#   scripts/test-setup.sh packages [go ...]    only the named parts, in the order given
# Parts: packages (Debian packages; installed when root, else the exact command is printed and the
# script stops, before any half-hour build), go (Go >= 1.24 present), build (tsc, esbuild), binaries (every
# server binary the suite runs, through `vaultops lab fetch`).
# Prints one "[setup] PART  Ns" line per part so a slow machine shows where the time went.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
started=$(date +%s)
timed() {
  local now
  now=$(date +%s)
  printf '[setup] %-44s %5ss\n' "$1" "$((now - started))" >&2
  started=$now
}

# --- system packages: the one list ----------------------------------------------------------------
# One line per need: "CHECK PACKAGE[,PACKAGE...]  why". CHECK is a command name (also looked for in
# /usr/sbin, which is not on every user's PATH) or one of the special checks in has() below.
REQUIREMENTS=(
  'openssl        openssl                the lab CA and its certificates'
  'sshd           openssh-server         SSH-driven runbooks against lab nodes (a real sshd per node)'
  'ssh-keygen     openssh-client         lab host and user keys'
  'tmux           tmux                   interactive end-to-end tests (a real terminal)'
  'age            age                    interop tests of age-encrypted backups against the real tool'
  'gpg            gnupg                  interop tests of OpenPGP-encrypted backups against the real tool'
  'python3        python3,python3-pip    OpenBao comes from PyPI'
  'pip            python3-pip            OpenBao comes from PyPI'
  'npm            nodejs,npm             runs npm ci (the project then brings its own Node 24)'
  'git            git                    Go fetches some modules with git'
  'curl           ca-certificates,curl   downloads over HTTPS'
  'systemd-nspawn systemd-container      lab machines (lab up --hosts): systemd hosts booted from this machine tree'
  'sudo           sudo                   lab machines: the ops user runs systemctl through sudo -n'
  'ip             iproute2               lab machines: their bridge, network namespaces and veths'
  'dpkg-scanpackages dpkg-dev           package upgrades on machines: the local apt repository the test serves'
  'podman         podman                 the container image (npm run image) is built and run'
  'runc           runc                   runs that image where crun cannot (cgroup v1 hosts)'
  'haproxy        haproxy                lb config tests (haproxy -c) and the lab load balancer (lab up --lb haproxy)'
  'nginx-stream   nginx-light,libnginx-mod-stream  lb config tests: nginx -t of the generated stream configuration'
  'tinyproxy      tinyproxy              HTTPS_PROXY/NO_PROXY tests (a real proxy in front of Vault and S3)'
)

has() {
  case "$1" in
    pip) command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 ;;
    # nginx with its stream module (TCP proxying), built in or as Debian's dynamic module.
    nginx-stream) has nginx && { [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || nginx -V 2>&1 | grep -q -- '--with-stream '; } ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

part_packages() {
  local line check pkgs why need=() for=()
  for line in "${REQUIREMENTS[@]}"; do
    read -r check pkgs why <<<"$line"
    has "$check" && continue
    for=("${for[@]}" "$check")
    local p
    for p in ${pkgs//,/ }; do
      [[ " ${need[*]} " == *" $p "* ]] || need=("${need[@]}" "$p")
    done
  done
  if [ "${#need[@]}" -eq 0 ]; then
    timed 'system packages: all present'
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "error: missing commands: ${for[*]} (Debian packages: ${need[*]})"
    say 'hint: install them with your package manager, then run the tests again.'
    exit 6
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "error: missing commands: ${for[*]}"
    say 'hint: install the Debian packages the test suite needs, then run the tests again:'
    printf '  sudo apt-get update && sudo apt-get install -y --no-install-recommends %s\n' "${need[*]}" >&2
    exit 6
  fi
  say "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  timed 'system packages: installed'
}

# HashiCorp Vault and versitygw (the S3 test server) are built from the Go module proxy, and
# Debian's golang is too old for them: fail early and clearly rather than deep inside a build.
part_go() {
  if ! command -v go >/dev/null 2>&1; then
    say 'error: Go is not installed; HashiCorp Vault and the S3 test server are built with it.'
    say 'hint: install Go >= 1.24 from https://go.dev/dl/ and put it on PATH (e.g. /usr/local/go/bin), then run the tests again.'
    exit 6
  fi
  local v
  v=$(go env GOVERSION 2>/dev/null || true)
  if [[ "$v" =~ ^go1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -lt 24 ]; then
    say "error: $v is too old; building HashiCorp Vault needs Go >= 1.24."
    say 'hint: install a newer Go from https://go.dev/dl/ and put it first on PATH, then run the tests again.'
    exit 6
  fi
  timed "go: ${v:-present}"
}

# The project's own Node 24 (the npm `node` package); the machine's node may be older.
node_bin() {
  if [ -x node_modules/.bin/node ]; then echo node_modules/.bin/node; else echo node; fi
}

part_build() {
  if [ ! -d node_modules ]; then
    say 'error: node_modules/ is missing.'
    say 'hint: run `npm ci` first.'
    exit 6
  fi
  npm run build --silent
  timed 'build'
}

# The binaries come from test/helpers/flavors.ts (the same list the suite's global set-up uses), so
# VAULTOPS_TEST_FLAVORS=openbao fetches only OpenBao.
part_binaries() {
  local node list flavor version
  node=$(node_bin)
  list=$("$node" --no-warnings -e 'import("./test/helpers/flavors.ts").then((m) => { for (const b of m.binariesUnderTest()) console.log(`${b.flavor} ${b.version}`); })')
  while read -r flavor version; do
    [ -n "$flavor" ] || continue
    "$node" bin/vaultops.js lab fetch --flavor "$flavor" --version "$version" >&2
    timed "lab fetch $flavor $version"
  done <<<"$list"
}

parts=("$@")
[ "${#parts[@]}" -gt 0 ] || parts=(packages go build binaries)
for p in "${parts[@]}"; do
  case "$p" in
    packages | go | build | binaries) "part_$p" ;;
    *)
      say "error: unknown part \"$p\"; use packages, go, build or binaries."
      exit 2
      ;;
  esac
done
