#!/usr/bin/env bash
# Build the node and operator container images, cached and idempotent.
#
#   hack/images.sh          # build (if the sources changed) and print the image references
#   hack/images.sh tag      # print the tag the current sources build to, build nothing
#
# No registry can be reached here, so the base image is made locally:
# `debootstrap --variant=minbase` of Debian bookworm with python3 (the same
# Python 3.11 as python:3.11-slim), committed as localhost/marketplace-fleet/base.
# The build context is a wheelhouse: the product wheels (`uv build` of protocol/,
# node/, operator/) and every dependency at the version and sha256 hash in
# lock/node.txt and lock/operator.txt, for CPython 3.11 manylinux, so each
# image's `RUN pip install --no-index --require-hashes` installs exactly its
# lock and needs no network inside the build. The node image gets neither kopf
# nor the Kubernetes client; neither image gets the local kubelet or the tests. buildah (Debian's) builds
# images/*.Containerfile on that base; each image is also saved as a
# docker-archive in the cache for `ctr images import` (tests/integration/images/)
# or `kind load image-archive`.
#
# IMAGE_BUILDER=docker builds the same files with docker on its default base
# (python:3.11-slim) for users with a registry; IMAGE_REGISTRY sets the prefix.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=hack/versions.env
source "$root/hack/versions.env"
cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}/images"
builder="${IMAGE_BUILDER:-buildah}"
registry="${IMAGE_REGISTRY:-localhost}"
suite=bookworm
base_packages=python3,python3-venv
base_ref="localhost/marketplace-fleet/base:$suite-$(echo "$suite $base_packages" | sha256sum | cut -c1-8)"
# What the product wheels are built from, and the images' locks.
image_inputs=(protocol node operator lock/node.txt lock/operator.txt)

log() { echo "images: $*" >&2; }

# The tag is a hash of everything that goes into an image, so unchanged
# sources rebuild nothing and a changed file always gives a new tag.
source_tag() {
  local version files
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml" | head -1)"
  files="$(cd "$root" && git ls-files --cached --others --exclude-standard -- \
    "${image_inputs[@]}" images | sort -u)"
  echo "$version-dev.$( (cd "$root" && echo "$base_ref" && xargs -r sha256sum <<<"$files") \
    | sha256sum | cut -c1-12)"
}

ensure_debs() {
  local missing=() cmd pkg
  # containerd and runc run the images (tests/integration/images/).
  for pair in debootstrap:debootstrap buildah:buildah ctr:containerd runc:runc; do
    cmd="${pair%%:*}" pkg="${pair##*:}"
    command -v "$cmd" >/dev/null || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

ensure_base() {
  have_image "$base_ref" && return
  local rootfs="$cache/rootfs-$suite.tmp" ctr mnt
  rm -rf "$rootfs"
  log "debootstrap $suite ($base_packages) -> $base_ref"
  debootstrap --variant=minbase --include="$base_packages" "$suite" "$rootfs" >&2
  # What a slim image leaves out: package caches and lists, docs, locales.
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  ctr="$(buildah from scratch)"
  mnt="$(buildah mount "$ctr")"
  cp -a "$rootfs"/. "$mnt"/
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' "$ctr"
  buildah commit --quiet --rm "$ctr" "$base_ref" >/dev/null
  rm -rf "$rootfs"
}

# The product wheels from the working tree plus every locked dependency as a
# wheel for CPython 3.11 on manylinux x86_64 (what both bases run).
make_context() {
  local ctx="$1"
  rm -rf "$ctx"
  mkdir -p "$ctx/wheelhouse" "$ctx/src"
  # A clean copy, so no stale build/ directory of the checkout leaks in.
  (cd "$root" && git ls-files -z --cached --others --exclude-standard -- "${image_inputs[@]}" \
    | tar --null --files-from=- -c) | tar -x -C "$ctx/src"
  local dist image uv
  uv="$("$root/hack/uv.sh")"
  for dist in protocol node operator; do
    "$uv" build --quiet --wheel --out-dir "$ctx/wheelhouse" "$ctx/src/$dist" >&2
  done
  for image in node operator; do
    cp "$ctx/src/lock/$image.txt" "$ctx/wheelhouse/$image.txt"
    # uv has no `pip download`; pip checks every file against the lock's hashes. pip runs
    # from uv's tool cache: the project's venvs are synced exactly and hold no pip.
    "$uv" tool run --from "pip==$PIP_VERSION" pip download --quiet --disable-pip-version-check --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --dest "$ctx/wheelhouse" \
      --require-hashes -r "$ctx/wheelhouse/$image.txt" >&2
  done
  rm -rf "$ctx/src"
  cp "$root"/images/*.Containerfile "$ctx/"
}

build_one() {
  local name="$1" tag="$2" ctx="$3"
  local ref="$registry/marketplace-fleet/$name:$tag"
  local archive="$cache/$name-$tag.tar"
  if [[ "$builder" == docker ]]; then
    docker build --quiet -f "$ctx/$name.Containerfile" -t "$ref" "$ctx" >&2
  else
    buildah bud --quiet --pull-never --isolation chroot --layers \
      --build-arg BASE_IMAGE="$base_ref" -f "$ctx/$name.Containerfile" -t "$ref" "$ctx" >&2
    buildah tag "$ref" "$registry/marketplace-fleet/$name:dev"
    buildah push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
    mv "$archive.tmp" "$archive"
  fi
  echo "$ref"
}

main() {
  local tag
  tag="$(source_tag)"
  if [[ "${1:-build}" == tag ]]; then
    echo "$tag"
    return
  fi
  mkdir -p "$cache"
  if [[ "$builder" == buildah ]]; then
    ensure_debs
    ensure_base
    if [[ -f "$cache/node-$tag.tar" && -f "$cache/operator-$tag.tar" ]] &&
      have_image "$registry/marketplace-fleet/node:$tag" &&
      have_image "$registry/marketplace-fleet/operator:$tag"; then
      echo "$registry/marketplace-fleet/node:$tag"
      echo "$registry/marketplace-fleet/operator:$tag"
      return
    fi
  fi
  local ctx="$cache/context-$tag" start=$SECONDS
  make_context "$ctx"
  build_one node "$tag" "$ctx"
  build_one operator "$tag" "$ctx"
  rm -rf "$ctx"
  # Older tags are dead weight: keep the current pair (and :dev) only.
  find "$cache" -maxdepth 1 -name '*.tar' ! -name "*-$tag.tar" -delete
  if [[ "$builder" == buildah ]]; then
    buildah images --format '{{.Name}}:{{.Tag}}' \
      | grep -E "^$registry/marketplace-fleet/(node|operator):" \
      | grep -v -e ":$tag\$" -e ':dev$' | xargs -r buildah rmi >/dev/null 2>&1 || true
    buildah rmi --prune >/dev/null 2>&1 || true
  fi
  log "built $tag in $((SECONDS - start)) s"
}

main "$@"
