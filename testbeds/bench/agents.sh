#!/usr/bin/env bash
# One receiver, N agents replicating at once (each its own process, tenant and
# group): every cycle must complete; prints the median and slowest cycle time and
# the receiver's peak memory per concurrent session.
#   LIFELINE=target/release/lifeline N=50 SIZE=4M testbeds/bench/agents.sh
set -euo pipefail
LIFELINE=${LIFELINE:-target/release/lifeline}
[[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
N=${N:-50}
SIZE=${SIZE:-4M}
W=$(mktemp -d /tmp/lifeline-agents-XXXXXX)
trap 'kill $RPID 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"
agents=() allow=()
for i in $(seq 0 $((N - 1))); do
    agents+=(--agent "a$i@t$i")
    allow+=(--allow "a$i=g$i")
done
"$LIFELINE" certs new --ca-dir ca --out tls --receiver-san 127.0.0.1 "${agents[@]}" >/dev/null
"$LIFELINE" key new --out k >/dev/null 2>&1
for i in $(seq 0 $((N - 1))); do head -c "$SIZE" /dev/urandom >"v$i.img"; done
"$LIFELINE" receiver --repo repo --listen 127.0.0.1:0 --tls-dir tls "${allow[@]}" >recv.out 2>recv.err &
RPID=$!
for _ in $(seq 100); do grep -q listening recv.out 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/listening on 127.0.0.1://p' recv.out)
base=$(awk '/VmRSS/{print $2}' /proc/$RPID/status)
start=$(date +%s.%N)
for i in $(seq 0 $((N - 1))); do
    ( /usr/bin/time -f %e -o "time$i" "$LIFELINE" agent --repo "https://127.0.0.1:$PORT" --tls-dir tls \
        --identity "a$i" --key-file k --group "g$i" --volume "v=v$i.img" --state-dir "st$i" --once \
        >"a$i.out" 2>"a$i.err"; echo $? >"rc$i" ) &
done
wait $(jobs -p | grep -v "^$RPID$") 2>/dev/null || true
while [[ $(ls rc* 2>/dev/null | wc -l) -lt $N ]]; do sleep 0.1; done
end=$(date +%s.%N)
fail=$(cat rc* | grep -vc '^0$' || true)
peak=$(awk '/VmHWM/{print $2}' /proc/$RPID/status)
cat time* | sort -n >times
median=$(awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}' times)
max=$(tail -1 times)
echo "agents: $N, volume $SIZE each, failed cycles: $fail"
echo "cycle time: median ${median}s, slowest ${max}s, slowest/median $(awk -v a="$max" -v b="$median" 'BEGIN{printf "%.2f", a/b}')"
echo "all done in $(awk -v a="$end" -v b="$start" 'BEGIN{printf "%.2f", a-b}')s"
echo "receiver RSS: ${base} KiB idle, ${peak} KiB peak, $(( (peak - base) / N )) KiB per concurrent session"
