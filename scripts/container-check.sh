#!/usr/bin/env bash
# Runs the Dockerfile's build steps without a Docker engine: a scratch
# directory gets the files each COPY step copies, in the same order, and
# scripts/container-build.sh runs each stage there. Then checks that
#   - the binary carries the routes file it was given (--print-routes,
#     --version's sha256) and passes --check;
#   - a routes change rebuilds only the last layer: the second build
#     compiles the root crate and nothing else;
#   - the Dockerfile still runs these steps.
#
#   scripts/container-check.sh            (PROFILE=dev by default: quick)
#   PROFILE=release scripts/container-check.sh
#
# Builds in target/container-check (never touches target/debug).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export PROFILE=${PROFILE:-dev}
export CARGO_TARGET_DIR=${CONTAINER_CHECK_TARGET:-$repo/target/container-check}
export CARGO_TERM_COLOR=never
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ctx=$work/src
fail() { echo "FAIL: $*" >&2; exit 1; }

for step in "container-build.sh deps" "container-build.sh crates" "container-build.sh app /out"; do
  grep -q "$step" "$repo/Dockerfile" || fail "the Dockerfile no longer runs \`$step\`"
done

# A copy of a directory as the Docker context has it (.dockerignore:
# no tests/, no target/).
copy_tree() {
  (cd "$repo" && tar --exclude=tests --exclude=target -cf - "$1") | (cd "$ctx" && tar -xf -)
}

echo "== layer 1: dependencies"
mkdir -p "$ctx/runtime" "$ctx/codegen" "$ctx/scripts"
cp "$repo/Cargo.toml" "$repo/Cargo.lock" "$ctx/"
cp "$repo/runtime/Cargo.toml" "$ctx/runtime/"
cp "$repo/codegen/Cargo.toml" "$ctx/codegen/"
cp "$repo/scripts/container-build.sh" "$ctx/scripts/"
(cd "$ctx" && scripts/container-build.sh deps)

echo "== layer 2: runtime and codegen"
copy_tree runtime
copy_tree codegen
(cd "$ctx" && scripts/container-build.sh crates)

echo "== layer 3: the routes and the binary"
cp "$repo/build.rs" "$ctx/"
copy_tree src
cp "$repo/routes.yaml" "$ctx/routes.yaml"
(cd "$ctx" && SIPFORGE_GIT_COMMIT=0123456789abcdef scripts/container-build.sh app "$work/out1")
"$work/out1/sipforge" --version | grep -qx "commit 0123456789abcdef" \
  || fail "the SIPFORGE_GIT_COMMIT build argument is not in --version"
"$work/out1/sipforge" --check >/dev/null || fail "--check failed on the built binary"

echo "== a routes change rebuilds only the last layer"
sed 's/You betcha/Changed by the routes PR/' "$repo/routes.yaml" > "$ctx/routes.yaml"
cmp -s "$repo/routes.yaml" "$ctx/routes.yaml" && fail "the test routes change changed nothing"
(cd "$ctx" && scripts/container-build.sh app "$work/out2") 2>&1 | tee "$work/app2.log"
compiled=$(grep -E '^ *Compiling ' "$work/app2.log" | sed -E 's/^ *Compiling ([^ ]+).*/\1/' | sort -u | tr '\n' ' ')
[ "$compiled" = "sipforge " ] || fail "a routes change recompiled: ${compiled:-nothing} (expected: sipforge)"
"$work/out2/sipforge" --print-routes | grep -q "Changed by the routes PR" || fail "the new routes are not in the binary"
old=$("$work/out1/sipforge" --version | sed -n 's/.*sha256://p')
new=$("$work/out2/sipforge" --version | sed -n 's/.*sha256://p')
[ "$old" != "$new" ] || fail "the routes sha256 did not change"

echo "container check: 3 layers built, the routes change rebuilt only the binary (sha256 $old -> $new)"
