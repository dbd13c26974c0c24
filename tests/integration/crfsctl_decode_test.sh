#!/bin/bash
# crfsctl decode prints an example session in CRFS snoop form, and reports
# damaged captures with a clear error and exit status 1.
# usage: crfsctl_decode_test.sh CRFSCTL
set -euo pipefail
crfsctl=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$crfsctl" example mkdir -o "$work/session.cap"
"$crfsctl" decode "$work/session.cap" > "$work/out" 2> "$work/err" || fail "decode of a good capture failed"
cat "$work/out"

expect() { grep -qF -- "$1" "$work/out" || fail "decode output lacks: $1"; }
expect 'header id 2 info 0 bytes 55 type 2 [CRFS_MSG_ITEM_QUERY]'
expect '  query key (256.0.0) min (256.0.0) max (256.~0.~0) bytes 4028'
expect '  range nr 4 min (256.0.0) max (256.~0.~0)'
expect '      ino sz 18 nlink 1 uid 0 gid 0 mode DIR|0755'
expect 'type 6 [CRFS_MSG_TRANS_FRAG]'
expect '  frag nr 0 last 1 flags 0x0 base 7 ranges 3'
expect "        dent len 8 type 2 [CRFS_FT_DIR] name 'some-dir' loc (p0.i.0)"
expect "    range nr 1 min (256.d.0x8513b709) max (256.d.0x8513b709)"
expect '    map p0 -> 258'
expect "      iref index 3 len 8 name 'some-dir'"
expect "  data ino 257 off 0 len 12 csums 1 [ok] data 'hello world\\x0a'"
expect 'header id 6 info 116 bytes 74 type 1 [CRFS_MSG_FINAL_REPLY] ESTALE'
expect '  final-reply generation 8'
grep -qF '17 frames' "$work/err" || fail "summary line missing"
# The DIR_ITEM offset printed is btrfs's hash of the name.
[ "$("$crfsctl" hash some-dir | cut -f1)" = $((0x8513b709)) ] || fail "hash of some-dir"

# Standard input works the same.
"$crfsctl" decode - < "$work/session.cap" | cmp -s - "$work/out" || fail "decode - differs from decode FILE"

# A capture cut in the middle of a frame: good frames print, then an error.
head -c 300 "$work/session.cap" > "$work/cut.cap"
if "$crfsctl" decode "$work/cut.cap" > "$work/cut.out" 2>&1; then fail "truncated capture decoded"; fi
grep -q 'error at byte 243: frame truncated: 348 payload bytes announced, 33 present' "$work/cut.out" || { cat "$work/cut.out"; fail "no truncation error"; }
grep -qF '[CRFS_MSG_HELLO_REPLY]' "$work/cut.out" || fail "frames before the cut not printed"

# A frame with a bad payload is reported and skipped; the rest still prints.
python3 - "$work/session.cap" "$work/bad.cap" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
b[24] ^= 0xff  # first byte of the HELLO payload: the magic
open(sys.argv[2], 'wb').write(b)
PY
if "$crfsctl" decode "$work/bad.cap" > "$work/bad.out" 2>&1; then fail "corrupt capture decoded"; fi
grep -q 'error: bad value: CRFS_MSG_HELLO: hello magic is not CRFS' "$work/bad.out" || { cat "$work/bad.out"; fail "no magic error"; }
grep -qF '[CRFS_MSG_DURABLE]' "$work/bad.out" && fail "invented a frame"
grep -qF "name 'some-dir'" "$work/bad.out" || fail "did not continue after the bad frame"

# A header that does not decode stops the run.
printf 'garbage that is not a crfs frame at all' > "$work/garbage.cap"
if "$crfsctl" decode "$work/garbage.cap" > "$work/g.out" 2>&1; then fail "garbage decoded"; fi
grep -q '^error at byte 0: ' "$work/g.out" || fail "no error for garbage"

# Usage errors exit 2.
set +e
"$crfsctl" decode a b > /dev/null 2>&1; [ $? -eq 2 ] || fail "decode a b should be a usage error"
"$crfsctl" frobnicate > /dev/null 2>&1; [ $? -eq 2 ] || fail "unknown command should be a usage error"
"$crfsctl" decode "$work/does-not-exist" > /dev/null 2>&1; [ $? -eq 1 ] || fail "missing file should fail"
set -e
echo PASS
