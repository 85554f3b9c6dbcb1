#!/usr/bin/env bash
# Random 4 KiB read latency of `lifeline serve` (README, "Instant recovery"):
# a point of a volume full of data (random bytes: every read needs its chunk
# decrypted and decompressed), served read-only, read by qemu-io (a real NBD
# client) at N random 4 KiB-aligned offsets, one request at a time:
#   cold  a fresh `lifeline serve` (no segment cached; as root the page cache
#         is dropped first), each read the first touch of its segment or not;
#   warm  the same offsets again in the same connection (segments cached).
# qemu-io prints each request's rate; the latency is its inverse. Prints the
# median and p99 of each, and the same reads of the raw image file as the floor.
#
# Environment:
#   LIFELINE   path to the lifeline binary   (default target/release/lifeline)
#   BENCH_DIR  scratch directory             (default /var/tmp/lifeline-serve-random)
#   SIZE       volume size                   (default 2G)
#   READS      reads per pass                (default 2000)
#   CACHE_MIB  `serve --cache-mib`           (default 64, serve's own default)
set -euo pipefail

LIFELINE=${LIFELINE:-target/release/lifeline}
[[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
BENCH_DIR=${BENCH_DIR:-/var/tmp/lifeline-serve-random}
SIZE=${SIZE:-2G}
READS=${READS:-2000}
CACHE_MIB=${CACHE_MIB:-64}

die() { echo "serve_random.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }
[[ -x $LIFELINE ]] || die "no lifeline binary at $LIFELINE (cargo build --release; or set LIFELINE=)"
for c in qemu-io python3 numfmt; do command -v $c >/dev/null || die "$c missing"; done
drop() { [[ $(id -u) == 0 ]] && { sync; echo 3 >/proc/sys/vm/drop_caches; } || true; }

rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR" && cd "$BENCH_DIR"
bytes=$(numfmt --from=iec "$SIZE")
log "a $SIZE volume of random data"
head -c "$bytes" /dev/urandom >vol.img
"$LIFELINE" key new --out key >/dev/null
"$LIFELINE" init --repo repo --key-file key >/dev/null
"$LIFELINE" backup --repo repo --key-file key --group g --volume vol=vol.img >/dev/null

# The offsets: READS random 4 KiB-aligned offsets, then the same again.
python3 - "$bytes" "$READS" >cmds <<'EOF'
import random, sys
size, n = int(sys.argv[1]), int(sys.argv[2])
random.seed(42)
offs = [random.randrange(0, size // 4096) * 4096 for _ in range(n)]
for o in offs + offs:
    print(f"read {o} 4096")
EOF
args=()
while read -r line; do args+=(-c "$line"); done <cmds

# Latencies (µs) from qemu-io's "…; 00.00 sec (x MiB/sec and R ops/sec)" lines.
lat() { python3 -c '
import re, sys, statistics
rates = [float(m.group(1)) for m in re.finditer(r"and ([0-9.]+) ops/sec", sys.stdin.read())]
n = int(sys.argv[1])
for name, part in (("cold", rates[:n]), ("warm", rates[n:])):
    us = sorted(1e6 / r for r in part)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    print(f"{name}: median {statistics.median(us):.0f} µs, p99 {p99:.0f} µs over {len(us)} reads")
' "$READS"; }

SERVE_PID=
stop_serve() { [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null; SERVE_PID=; true; }
trap stop_serve EXIT
drop
"$LIFELINE" serve --repo repo --key-file key --group g --listen 127.0.0.1:0 --read-only --cache-mib "$CACHE_MIB" >serve.out 2>serve.err &
SERVE_PID=$!
until grep -q '^listening on nbd://' serve.out 2>/dev/null; do
    kill -0 "$SERVE_PID" 2>/dev/null || die "serve exited: $(cat serve.err)"
    sleep 0.01
done
addr=$(head -1 serve.out | sed 's|listening on nbd://||')
echo "lifeline serve, $SIZE of random data, $READS random 4 KiB reads, queue depth 1 (qemu-io):"
qemu-io -r -f raw "nbd://$addr/vol" "${args[@]}" | lat
stop_serve

drop
echo "the raw image file, same reads (the floor):"
qemu-io -r -f raw vol.img "${args[@]}" | lat
