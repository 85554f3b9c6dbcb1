#!/usr/bin/env bash
# First sync across a 200 Mbit/s, 20 ms RTT link between two network namespaces
# (root + iproute2). Bandwidth: tc tbf on both veth ends; latency: Lifeline's own
# delay proxy (this kernel has no netem), 10 ms each way. Prints the link use.
#   sudo LIFELINE=target/release/lifeline SIZE=512M testbeds/bench/netns.sh
set -euo pipefail
LIFELINE=${LIFELINE:-target/release/lifeline}
[[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
SIZE=${SIZE:-512M}
RATE_MBIT=${RATE_MBIT:-200}
DELAY=${DELAY:-10ms}
A=llbench-a B=llbench-b
# RFC 2544 benchmarking addresses, inside namespaces made here.
IPA=198.18.0.1 IPB=198.18.0.2
W=$(mktemp -d /tmp/lifeline-netns-XXXXXX)
cleanup() {
    ip netns pids $A 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns pids $B 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
cleanup; W=$(mktemp -d /tmp/lifeline-netns-XXXXXX)
ip netns add $A
ip netns add $B
ip link add llb-va type veth peer name llb-vb
ip link set llb-va netns $A
ip link set llb-vb netns $B
ip -n $A addr add $IPA/30 dev llb-va
ip -n $B addr add $IPB/30 dev llb-vb
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set llb-va up
ip -n $B link set llb-vb up
ip netns exec $A tc qdisc add dev llb-va root tbf rate ${RATE_MBIT}mbit burst 256kb latency 100ms
ip netns exec $B tc qdisc add dev llb-vb root tbf rate ${RATE_MBIT}mbit burst 256kb latency 100ms
cd "$W"
"$LIFELINE" certs new --ca-dir ca --out tls --receiver-san 127.0.0.1 --receiver-san $IPB --agent a@t >/dev/null
"$LIFELINE" key new --out k >/dev/null 2>&1
head -c "$SIZE" /dev/urandom >v.img
ip netns exec $B "$LIFELINE" receiver --repo repo --listen $IPB:7443 --tls-dir tls --allow a=g >recv.out 2>recv.err &
for _ in $(seq 100); do grep -q listening recv.out 2>/dev/null && break; sleep 0.1; done
ip netns exec $A "$LIFELINE" testbed proxy --listen 127.0.0.1:0 --upstream $IPB:7443 --delay "$DELAY" >proxy.out 2>proxy.err &
for _ in $(seq 100); do grep -q listening proxy.out 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/listening on 127.0.0.1://p' proxy.out)
json=$(ip netns exec $A "$LIFELINE" backup --repo "https://127.0.0.1:$PORT" --tls-dir tls --identity a \
    --key-file k --group g --volume v=v.img --state-dir st --json)
echo "$json"
echo "$json" | python3 -c "
import json, sys
d = json.load(sys.stdin)
rate = $RATE_MBIT * 1e6 / 8
got = d['bytes_stored'] / d['elapsed_secs']
print(f'link {$RATE_MBIT} Mbit/s (tc tbf), round trip 2 x $DELAY (delay proxy)')
print(f'first sync: {d[\"bytes_stored\"]/1e6:.0f} MB in {d[\"elapsed_secs\"]:.2f} s = {got*8/1e6:.0f} Mbit/s = {100*got/rate:.0f}% of the link')
"
