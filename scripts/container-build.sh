#!/usr/bin/env bash
# The build steps of the container image, one per Dockerfile layer, so a
# routes change rebuilds only the last one. The Dockerfile runs them; so
# does scripts/container-check.sh (and CI), in a scratch copy laid out the
# way the Dockerfile's COPY steps lay it out, without a Docker engine.
#
#   container-build.sh deps       manifests only: stub sources, build every
#                                 third-party crate (the slow part)
#   container-build.sh crates     + runtime/ and codegen/: build the two
#                                 heavy workspace crates
#   container-build.sh app DEST   + build.rs, src/, routes.yaml: build the
#                                 binary, smoke-test it, copy it to DEST
#
# Run from the top of the (copied) workspace. Environment:
#   PROFILE               cargo profile, `release` (default) or `dev`
#   CARGO_TARGET_DIR      where cargo builds (default ./target)
#   SIPFORGE_GIT_COMMIT   the commit, for --version (the image has no .git)
set -euo pipefail

PROFILE=${PROFILE:-release}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$PROFILE" in
  release) OUT_SUBDIR=release ;;
  dev) OUT_SUBDIR=debug ;;
  *) echo "container-build: PROFILE must be release or dev, not $PROFILE" >&2; exit 2 ;;
esac

die() { echo "container-build: $*" >&2; exit 1; }

build() {
  cargo build --locked --profile "$PROFILE" -p sipforge
}

# Give every file of these trees a fresh mtime: COPY keeps the build
# context's times, which can be older than the stub artifacts, and cargo
# would then keep the stubs.
touch_tree() {
  for t in "$@"; do
    [ -e "$t" ] && find "$t" -exec touch {} +
  done
  return 0
}

stub_lib() { # DIR: an empty library crate
  mkdir -p "$1/src"
  echo "//! placeholder for the dependency layer" > "$1/src/lib.rs"
}

case "${1:-}" in
  deps)
    [ -f Cargo.toml ] && [ -f Cargo.lock ] || die "run from the workspace top (Cargo.toml, Cargo.lock)"
    [ -f runtime/Cargo.toml ] && [ -f codegen/Cargo.toml ] || die "runtime/Cargo.toml and codegen/Cargo.toml are needed"
    stub_lib runtime
    stub_lib codegen
    echo "fn main() {}" > codegen/src/main.rs
    mkdir -p src
    echo "fn main() {}" > src/main.rs
    echo "fn main() {}" > build.rs
    # Test targets the manifest names ([[test]] with harness = false) must
    # exist for cargo to read it; the image has no tests/, so stubs.
    for t in $(sed -n '/^\[\[test\]\]/,/^name/s/^name = "\(.*\)"/\1/p' Cargo.toml); do
      mkdir -p tests
      [ -f "tests/$t.rs" ] || echo "fn main() {}" > "tests/$t.rs"
    done
    build
    ;;
  crates)
    [ -f runtime/src/lib.rs ] && [ -f codegen/src/lib.rs ] || die "copy runtime/ and codegen/ first"
    touch_tree runtime codegen
    build
    ;;
  app)
    dest=${2:-}
    [ -n "$dest" ] || die "usage: container-build.sh app DEST"
    [ -f routes.yaml ] || die "routes.yaml is missing (the Dockerfile copies the ROUTES build argument there)"
    [ -f src/main.rs ] && [ -f build.rs ] || die "copy build.rs and src/ first"
    touch_tree build.rs src routes.yaml
    unset SIPFORGE_ROUTES
    build
    bin="$TARGET_DIR/$OUT_SUBDIR/sipforge"
    # Smoke test: the binary runs and carries exactly this routes file.
    "$bin" --version
    "$bin" --print-routes | cmp -s - routes.yaml || die "the binary does not carry routes.yaml (stale build?)"
    want=$(sha256sum routes.yaml | cut -d' ' -f1)
    "$bin" --version | grep -q "sha256:$want" || die "--version does not show sha256:$want"
    mkdir -p "$dest"
    cp "$bin" "$dest/sipforge"
    echo "container-build: $dest/sipforge built with routes sha256:$want"
    ;;
  *)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
