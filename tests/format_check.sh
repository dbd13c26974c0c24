#!/bin/bash
# Every C++ source file follows .clang-format. Kernel C (kmod/, the kernel
# test module and proto/crfs_proto.h) follows the kernel's style instead.
# usage: format_check.sh SOURCE_DIR
set -euo pipefail
cd "$1"
mapfile -t files < <(git ls-files '*.cc' '*.h' 2>/dev/null | grep -v -e '^kmod/' -e '^proto/crfs_proto.h$' || true)
if [ ${#files[@]} -eq 0 ]; then  # not a git checkout: fall back to find
  mapfile -t files < <(find proto tools tests server client authd policy pki -name '*.cc' -o -name '*.h' 2>/dev/null |
                       grep -v -e '^proto/crfs_proto.h$')
fi
[ ${#files[@]} -gt 0 ] || { echo "FAIL: no sources found"; exit 1; }
clang-format --dry-run --Werror "${files[@]}"
echo "PASS: ${#files[@]} files formatted"
