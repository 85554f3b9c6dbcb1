#!/usr/bin/env bash
# Times `lifeline testbed up` and `down`, N times each, in both flavours (netns
# only as root). Prints every run and the median.
#   LIFELINE=target/release/lifeline N=5 testbeds/bench/updown.sh
set -euo pipefail
LIFELINE=${LIFELINE:-target/release/lifeline}
N=${N:-5}
W=$(mktemp -d /tmp/lifeline-updown-XXXXXX)
trap 'rm -rf "$W"' EXIT
flavours=(local)
[ "$(id -u)" = 0 ] && command -v ip >/dev/null && flavours+=(netns)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for f in "${flavours[@]}"; do
    flag=(); [ "$f" = netns ] && flag=(--netns)
    ups=() downs=()
    for i in $(seq "$N"); do
        d="$W/$f-$i"
        t0=$(date +%s.%N)
        "$LIFELINE" testbed up --dir "$d" "${flag[@]}" --latency 20ms --rate 200mbit >/dev/null
        t1=$(date +%s.%N)
        "$LIFELINE" testbed down --dir "$d" >/dev/null
        t2=$(date +%s.%N)
        ups+=("$(awk "BEGIN{print $t1 - $t0}")") downs+=("$(awk "BEGIN{print $t2 - $t1}")")
        printf '%s run %d: up %.3f s, down %.3f s\n' "$f" "$i" "${ups[-1]}" "${downs[-1]}"
    done
    printf '%s median: up %.3f s, down %.3f s\n' "$f" \
        "$(printf '%s\n' "${ups[@]}" | median)" "$(printf '%s\n' "${downs[@]}" | median)"
done
