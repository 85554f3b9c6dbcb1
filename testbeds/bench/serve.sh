#!/usr/bin/env bash
# Instant recovery figures for `lifeline serve` (README, "Instant recovery"):
#  1. time to first byte: from `lifeline serve` started to `nbdinfo --size`
#     answering, and to the first 4 KiB of data read by qemu-io (one segment
#     decoded), for sparse points of several sizes with data spread through them
#     (`nbdinfo` without --size spends ~210 ms in the client on its own, against
#     qemu-nbd as well, so it is not used);
#  2. sequential read: `nbdcopy` of the export to null: against `lifeline
#     restore` of the same point, on an ext4 image built like compare.sh's.
#
# Environment:
#   LIFELINE   path to the lifeline binary   (default target/release/lifeline)
#   BENCH_DIR  scratch directory             (default /var/tmp/lifeline-serve-bench)
#   SIZES      sparse point sizes            (default "1G 10G 100G")
#   EXT4_SIZE  size of the ext4 image        (default 3G; 0 skips part 2)
#   RUNS       runs per figure (median)      (default 5)
# Needs nbdinfo and nbdcopy (libnbd-bin); as root, caches are dropped before
# every timed read.
set -euo pipefail

LIFELINE=${LIFELINE:-target/release/lifeline}
[[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
BENCH_DIR=${BENCH_DIR:-/var/tmp/lifeline-serve-bench}
SIZES=${SIZES:-"1G 10G 100G"}
EXT4_SIZE=${EXT4_SIZE:-3G}
RUNS=${RUNS:-5}

die() { echo "serve.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }
[[ -x $LIFELINE ]] || die "no lifeline binary at $LIFELINE (cargo build --release; or set LIFELINE=)"
for c in nbdinfo nbdcopy qemu-io python3 numfmt; do command -v $c >/dev/null || die "$c missing"; done
drop() { [[ $(id -u) == 0 ]] && { sync; echo 3 >/proc/sys/vm/drop_caches; } || true; }
now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; print("%.3f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR" && cd "$BENCH_DIR"
"$LIFELINE" key new --out key >/dev/null
"$LIFELINE" init --repo repo --key-file key >/dev/null

SERVE_PID=
stop_serve() { [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null; SERVE_PID=; true; }
trap stop_serve EXIT
# Starts serve for group $1 (extra args after), sets ADDR once it listens.
start_serve() {
    local group=$1; shift
    rm -f serve.out
    "$LIFELINE" serve --repo repo --key-file key --group "$group" --listen 127.0.0.1:0 --read-only "$@" \
        >serve.out 2>serve.err &
    SERVE_PID=$!
    until grep -q '^listening on nbd://' serve.out 2>/dev/null; do
        kill -0 "$SERVE_PID" 2>/dev/null || die "serve exited: $(cat serve.err)"
        sleep 0.002
    done
    ADDR=$(head -1 serve.out | sed 's|listening on nbd://||')
}

echo "| point | data | first backup | serve → nbdinfo --size answers | serve → first 4 KiB of data read |"
echo "|---|---:|---:|---:|---:|"
for size in $SIZES; do
    bytes=$(numfmt --from=iec "$size")
    img=sparse-$size.img
    truncate -s "$size" "$img"
    # 16 runs of 4 MiB of random bytes spread evenly through the volume.
    for i in $(seq 0 15); do
        dd if=/dev/urandom of="$img" bs=1M count=4 seek=$((bytes / 16 * i / 1048576)) conv=notrunc status=none
    done
    t0=$(now)
    "$LIFELINE" backup --repo repo --key-file key --group "g$size" --volume "v=$img" --state-dir state >/dev/null
    backup=$(python3 -c "print('%.1f s' % ($(now) - $t0))")
    rm -f "$img"
    times=() reads=()
    for _ in $(seq "$RUNS"); do
        drop
        t0=$(now)
        start_serve "g$size"
        nbdinfo --size "nbd://$ADDR/v" >/dev/null
        times+=("$(python3 -c "print($(now) - $t0)")")
        stop_serve
        drop
        t0=$(now)
        start_serve "g$size"
        qemu-io -f raw -r -c 'read 0 4k' "nbd://$ADDR/v" >/dev/null
        reads+=("$(python3 -c "print($(now) - $t0)")")
        stop_serve
    done
    echo "| $size sparse | 64 MiB | $backup | $(median "${times[@]}") s | $(median "${reads[@]}") s |"
done

[[ $EXT4_SIZE == 0 ]] && exit 0
log "ext4 image of $EXT4_SIZE"
src=
for d in /usr/share /usr/lib/x86_64-linux-gnu /usr/lib; do
    [[ -d $d ]] && { src=$d; break; }
done
truncate -s "$EXT4_SIZE" ext4.img
mke2fs -q -t ext4 -F -d "$src" ext4.img 2>/dev/null || mke2fs -q -t ext4 -F ext4.img
"$LIFELINE" backup --repo repo --key-file key --group ext4 --volume "v=ext4.img" --state-dir state >/dev/null
bytes=$(stat -c %s ext4.img)
data=$(du -B1 ext4.img | cut -f1)
rm -f ext4.img
restore=() copy=()
for _ in $(seq "$RUNS"); do
    drop
    t0=$(now)
    "$LIFELINE" restore --repo repo --key-file key --group ext4 --volume v --to restored.img >/dev/null
    restore+=("$(python3 -c "print($(now) - $t0)")")
    rm -f restored.img
    drop
    start_serve ext4
    t0=$(now)
    nbdcopy "nbd://$ADDR/v" null:
    copy+=("$(python3 -c "print($(now) - $t0)")")
    stop_serve
done
r=$(median "${restore[@]}")
c=$(median "${copy[@]}")
echo
echo "| $EXT4_SIZE ext4 image ($(numfmt --to=iec "$data") allocated) | time (median of $RUNS, cold) | volume bytes/s |"
echo "|---|---:|---:|"
echo "| lifeline restore --to FILE | $r s | $(numfmt --to=iec $(python3 -c "print(int($bytes / $r))"))/s |"
echo "| serve + nbdcopy nbd://…/v null: | $c s | $(numfmt --to=iec $(python3 -c "print(int($bytes / $c))"))/s |"
echo "| nbdcopy ÷ restore throughput | $(python3 -c "print('%.0f %%' % (100 * $r / $c))") | |"
