#!/usr/bin/env bash
# npm run image [-- --tag REF]: a container image of vaultops built FROM scratch (no base image, so
# no registry is needed): the Node binary this project runs on with the shared libraries it links,
# the packed package (`npm pack`, as users install it) with its production dependencies, CA
# certificates, and an unprivileged user. Built with podman, buildah or docker, whichever is here.
set -euo pipefail

cd "$(dirname "$0")/.."
# The Node this project runs on (the npm `node` package), not whatever `node` is first on PATH.
node=node
[ -x node_modules/.bin/node ] && node=node_modules/.bin/node
version=$("$node" -p "require('./package.json').version")
tag="${IMAGE_TAG:-localhost/vaultops:${version}}"
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --tag=*) tag="${1#--tag=}"; shift ;;
    *) echo "npm run image: unknown argument $1 (use --tag REF)" >&2; exit 2 ;;
  esac
done

if command -v podman >/dev/null; then build=(podman build)
elif command -v buildah >/dev/null; then build=(buildah bud)
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then build=(docker build)
else
  echo "npm run image needs podman, buildah or docker: apt-get install podman" >&2
  exit 6
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/vaultops-image-XXXXXX")
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root"/{app,etc/ssl/certs,tmp,home/vaultops,var/lib/vaultops,usr/local/bin}
chmod 1777 "$root/tmp"

# That Node binary, and the shared libraries it links.
node_bin=$(readlink -f "$("$node" -p process.execPath)")
cp "$node_bin" "$root/usr/local/bin/node"
ldd "$node_bin" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

# The package as users get it (the files package.json ships, from the build already in dist/: packing
# with its prepack would rebuild dist/ under whatever else runs from it), then its production
# dependencies only, no scripts run.
[ -f dist/cli/main.js ] || npm run build --silent
tarball=$(npm pack --silent --ignore-scripts --pack-destination "$ctx" | tail -n 1)
(cd "$root/app" && npm init -y >/dev/null &&
  npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error "$ctx/$tarball")
rm -f "$root/app/package.json" "$root/app/package-lock.json"

cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nvaultops:x:65532:65532:vaultops:/home/vaultops:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nvaultops:x:65532:\n' >"$root/etc/group"
chown -R 65532:65532 "$root/home/vaultops" "$root/var/lib/vaultops" 2>/dev/null || true

cp Containerfile "$ctx/Containerfile"
"${build[@]}" -f "$ctx/Containerfile" -t "$tag" "$ctx"
echo "Built $tag"
