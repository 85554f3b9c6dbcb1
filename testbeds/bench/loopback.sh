#!/usr/bin/env bash
# Replication over loopback against a local backup of the same volume: the
# replication issue's "first sync at 80 % of local throughput" figure, agent and
# receiver sharing this machine's cores.
#
# For each case, RUNS times (fresh repository and state each run, page cache
# warm): `lifeline backup` into a local directory, then `lifeline agent --once`
# to a `lifeline receiver` on 127.0.0.1 over mutual TLS. Prints each time and
# the ratio of the medians (local time / replication time = replication's share
# of local throughput).
#
#   LIFELINE=target/release/lifeline testbeds/bench/loopback.sh
#   CASES="ext4 random" RUNS=3 IMG_SIZE=3G RANDOM_SIZE=300M BENCH_DIR=/var/tmp
#
# Cases: `ext4` (a 3 GiB ext4 image made with `mke2fs -d /usr/share`, as in
# compare.sh) and `random` (incompressible data, nothing to dedup).
set -euo pipefail
LIFELINE=${LIFELINE:-target/release/lifeline}
[[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
CASES=${CASES:-ext4 random}
RUNS=${RUNS:-3}
IMG_SIZE=${IMG_SIZE:-3G}
RANDOM_SIZE=${RANDOM_SIZE:-300M}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
W=$(mktemp -d "$BENCH_DIR/lifeline-loopback-XXXXXX")
RPID=
trap '[[ -n $RPID ]] && kill $RPID 2>/dev/null; rm -rf "$W"' EXIT
cd "$W"
"$LIFELINE" certs new --ca-dir ca --out tls --receiver-san 127.0.0.1 --agent a1@t1 >/dev/null
"$LIFELINE" key new --out k >/dev/null 2>&1

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

for case in $CASES; do
    case $case in
    ext4)
        truncate -s "$IMG_SIZE" v.img
        mke2fs -q -t ext4 -d /usr/share v.img
        ;;
    random) head -c "$RANDOM_SIZE" /dev/urandom >v.img ;;
    *) echo "unknown case $case" >&2; exit 2 ;;
    esac
    cat v.img >/dev/null # warm
    data=$(du -B1 v.img | cut -f1)
    local_t=() remote_t=()
    for run in $(seq "$RUNS"); do
        rm -rf repo st
        "$LIFELINE" init --repo repo --key-file k >/dev/null
        sync
        t0=$(now)
        "$LIFELINE" backup --repo repo --key-file k --group g --volume v=v.img --state-dir st >/dev/null
        t1=$(now)
        local_t+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN{printf "%.3f", a-b}')")

        rm -rf rrepo st
        "$LIFELINE" receiver --repo rrepo --listen 127.0.0.1:0 --tls-dir tls --allow a1=g >recv.out 2>recv.err &
        RPID=$!
        for _ in $(seq 100); do grep -q listening recv.out 2>/dev/null && break; sleep 0.05; done
        port=$(sed -n 's/listening on 127.0.0.1://p' recv.out)
        sync
        t0=$(now)
        "$LIFELINE" agent --repo "https://127.0.0.1:$port" --tls-dir tls --identity a1 --key-file k \
            --group g --volume v=v.img --state-dir st --once >agent.out 2>agent.err
        t1=$(now)
        remote_t+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN{printf "%.3f", a-b}')")
        kill $RPID
        wait $RPID 2>/dev/null || true
        RPID=
    done
    lm=$(printf '%s\n' "${local_t[@]}" | median)
    rm_=$(printf '%s\n' "${remote_t[@]}" | median)
    echo "case $case: $(numfmt --to=iec "$data") of data; local backup ${local_t[*]} s; over mTLS ${remote_t[*]} s"
    echo "  medians: local $lm s, replication $rm_ s = $(awk -v a="$lm" -v b="$rm_" 'BEGIN{printf "%.0f", 100 * a / b}') % of local throughput"
done
