#!/usr/bin/env bash
# Build the Lambda bundle of template.yaml (CodeUri: build/) from this checkout, never from a
# package index: ssb_s3 is built from the source tree it sits in, its dependencies are the pinned
# releases of requirements-lambda.txt (the whole closure, installed with --no-deps).
#
#   examples/aws/build-bundle.sh [OUT]   then: cp tree.yml OUT/ (unless SSB_CONFIG is s3://...)
#
# OUT defaults to examples/aws/build/, where template.yaml's CodeUri points.
#
# Environment: LAMBDA_PYTHON   Python of the function's Runtime (default 3.12, as template.yaml)
#              LAMBDA_PLATFORM wheel platform (default manylinux2014_x86_64; for an arm64
#                              function: manylinux2014_aarch64)
#              PYTHON          interpreter running pip (default python3)
# OUT is replaced only if it is empty or a bundle this script built before.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/build}"
python="${PYTHON:-python3}"
runtime="${LAMBDA_PYTHON:-3.12}"
platform="${LAMBDA_PLATFORM:-manylinux2014_x86_64}"
marker=".ssb-s3-bundle"

if [ ! -f "$repo/pyproject.toml" ] || [ ! -d "$repo/ssb_s3" ]; then
    echo "error: $repo is not an ssb_s3 checkout (no pyproject.toml and ssb_s3/)" >&2
    exit 1
fi
if [ -e "$out" ] && [ ! -e "$out/$marker" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "error: $out exists and is not a bundle built by this script; remove it or choose another OUT" >&2
    exit 1
fi
rm -rf "$out"
mkdir -p "$out"
touch "$out/$marker"

pip=("$python" -m pip install --quiet --disable-pip-version-check --no-input --no-compile --target "$out")
# Dependencies: binary wheels for the function's runtime, exactly the pinned releases.
"${pip[@]}" --no-deps --only-binary=:all: --implementation cp --python-version "$runtime" \
    --platform "$platform" -r "$here/requirements-lambda.txt"
rm -rf "$out/bin"  # console scripts with this machine's interpreter path: of no use in a Lambda
# ssb_s3 itself, from this checkout (pure Python: the same on every platform), built from a copy
# so that setuptools leaves no build/ or *.egg-info in the checkout (nor in an OUT named build/).
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
cp -R "$repo/pyproject.toml" "$repo/README.md" "$repo/ssb_s3" "$src/"
"${pip[@]}" --no-deps "$src"
rm -rf "$out/bin"
echo "built $out for python$runtime on $platform; next: cp tree.yml $out/ (unless SSB_CONFIG is s3://...)" >&2
