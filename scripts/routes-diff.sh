#!/usr/bin/env bash
# What a routes change does to the generated Rust, for a PR review:
#   scripts/routes-diff.sh [BASE_REV] [ROUTES]
# checks ROUTES (default routes.yaml) as it is in the work tree, then prints
# the unified diff between the code generated from BASE_REV's version
# (default origin/main, else main) and from the work tree's. Exit 0 with a
# diff or "no change"; 1 when the routes file has errors.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
routes=${2:-routes.yaml}
base=${1:-}
if [ -z "$base" ]; then
  if git rev-parse -q --verify origin/main >/dev/null; then base=origin/main; else base=main; fi
fi
export CARGO_TERM_COLOR=never
cargo build --quiet --locked -p sipforge-codegen
codegen=${CARGO_TARGET_DIR:-$repo/target}/debug/sipforge-codegen

echo "== check $routes"
"$codegen" check "$routes"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base" "$work/head"
# Same relative name on both sides, so the embedded path does not differ.
name=$(basename "$routes")
if git cat-file -e "$base:$routes" 2>/dev/null; then
  git show "$base:$routes" > "$work/base/$name"
  (cd "$work/base" && "$codegen" emit "$name" > generated.rs 2> errors.txt) \
    || echo "(the base version does not compile: $(head -1 "$work/base/errors.txt"))"
else
  echo "($routes is new: no base version at $base)"
fi
touch "$work/base/generated.rs"
cp "$routes" "$work/head/$name"
(cd "$work/head" && "$codegen" emit "$name" > generated.rs)

echo "== generated code: $base -> work tree"
if diff -u --label "generated from $base:$routes" --label "generated from $routes" \
  "$work/base/generated.rs" "$work/head/generated.rs"; then
  echo "no change"
fi
