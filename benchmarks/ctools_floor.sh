#!/usr/bin/env bash
# The C-tool floor of unpacking: every package archive's payload extracted into PREFIX, two at a time.
#
#   bash benchmarks/ctools_floor.sh PREFIX ARCHIVE...
#
# .conda: unzip -p the pkg-*.tar.zst member | zstd -dc | tar -x; .tar.bz2: tar -xjf (its info/ as well).
# tar keeps modes and mtimes as pixi-unpack does; --no-same-owner spares it the chown per file that tar
# makes as root and pixi-unpack never makes, so the floor does no work pixi-unpack skips.
set -euo pipefail
prefix=$1
shift
mkdir -p "$prefix"
printf '%s\0' "$@" | xargs -0 -P 2 -n 1 bash -c '
  set -euo pipefail
  case $1 in
    *.conda) unzip -p "$1" "pkg-*.tar.zst" | zstd -dcq | tar -x --no-same-owner -C "$0" ;;
    *.tar.bz2) tar -xjf "$1" --no-same-owner -C "$0" ;;
    *) echo "not a conda package: $1" >&2; exit 1 ;;
  esac' "$prefix"
