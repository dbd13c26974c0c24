#!/bin/bash
# Runs one libFuzzer target for a bounded time from a seed corpus made by
# `crfsctl example mkdir` (frames and item bodies), in a scratch directory. Fails if the fuzzer finds
# a crash, leak, timeout or oracle violation (libFuzzer exits nonzero).
# Seed files in SEEDS (if given) are added to the corpus.
# usage: run_fuzzer.sh FUZZER CRFSCTL SECONDS [SEEDS]
set -euo pipefail
fuzzer=$1 crfsctl=$2 seconds=$3 seeds=${4:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
"$crfsctl" example mkdir -o "$work/corpus/example-session"
# Split the example into one seed per frame as well.
python3 - "$work/corpus/example-session" "$work/corpus" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
pos, n = 0, 0
while pos + 24 <= len(data):
    size = struct.unpack_from('<I', data, pos + 12)[0]
    frame = data[pos:pos + 24 + size]
    open(f"{sys.argv[2]}/frame-{n}", 'wb').write(frame)
    # Item-body seeds: byte 0 picks the type (see item_decoder_fuzz.cc).
    open(f"{sys.argv[2]}/item-{n}", 'wb').write(bytes([n % 6]) + frame[24 + 67:])
    pos += 24 + size
    n += 1
PY
[ -z "$seeds" ] || cp "$seeds"/* "$work/corpus/"
cd "$work"
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 corpus 2>&1 | tail -n 25
