#!/usr/bin/env bash
# Failback figure: "failback of a 1 GiB volume in which 1% of the 4 KiB blocks were
# overwritten at scattered places after failover sends less than 3% of the volume".
#
# Real processes on one machine, two sites as directories and loopback ports:
#   1. the primary volume is replicated to the secondary's receiver (agent db1, --once);
#   2. `lifeline failover` promotes the last point onto the secondary's target volume;
#   3. 1% of the target's 4 KiB blocks, at scattered seeded-random offsets, are
#      overwritten with new content of the same kind as the data around them;
#   4. `lifeline failback` runs a runbook that seeds the primary's repository from
#      the surviving primary volume, starts the primary's receiver and the reverse
#      agent dr1 on the secondary, final-syncs, stops, promotes onto the primary
#      volume and checks zero loss.
# Reported per case: what the reverse agent sent (sealed objects, from its
# `cycle: point …, X sent` lines) and what it wrote to its sockets, log and state
# (`wchar` of /proc/PID/io: TLS records, id lists, framing; an upper bound on the
# wire bytes), both against the volume size.
#
#   LIFELINE=target/release/lifeline testbeds/bench/failback.sh
#   SIZE_MIB=1024 CASES="random mixed" OVERWRITE_PERMILLE=10 SEED=20240601 BENCH_DIR=/var/tmp
#
# Cases: `random` (the whole volume random: incompressible, nothing to dedup but
# the seed), `mixed` (first half random, second half log-like text that zstd
# compresses; overwrites in each half are of that half's kind).
set -euo pipefail
LIFELINE=${LIFELINE:-target/release/lifeline}
[[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
SIZE_MIB=${SIZE_MIB:-1024}
CASES=${CASES:-random mixed}
OVERWRITE_PERMILLE=${OVERWRITE_PERMILLE:-10}
SEED=${SEED:-20240601}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
KEEP=${KEEP:-0}

pids=()
W=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n $W && $KEEP != 1 ]]; then rm -rf "$W"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# volume.py make PATH SIZE_MIB CASE SEED | scatter PATH CASE PERMILLE SEED
cat >/tmp/lifeline-failback-volume.$$.py <<'PY'
import os, random, sys

BLOCK = 4096
PIECE = 4 << 20

def vocabulary(rng, n=4096):
    syll = ["ka", "lo", "mi", "re", "tu", "an", "es", "or", "ip", "ul", "ne", "sa", "di", "po", "ve", "gra",
            "str", "on", "ex", "im", "ta", "co", "de", "bi"]
    return ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(n)]

def text(rng, vocab, n, line0):
    # Log lines: timestamp, level, component, a few words, an id; fresh every line.
    out, size, line = [], 0, line0
    levels = ["INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"]
    while size < n:
        line += 1
        s = "2024-06-01T%02d:%02d:%02d.%03dZ %s %s[%d]: %s id=%08x\n" % (
            line // 3600000 % 24, line // 60000 % 60, line // 1000 % 60, line % 1000,
            rng.choice(levels), rng.choice(vocab[:64]), rng.getrandbits(15),
            " ".join(rng.choices(vocab, k=rng.randint(4, 12))), rng.getrandbits(32))
        out.append(s)
        size += len(s)
    return "".join(out).encode()[:n], line

def is_text(case, offset, size):
    return case == "mixed" and offset >= size // 2

def make(path, size_mib, case, seed):
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    size = size_mib << 20
    line = 0
    with open(path, "wb") as f:
        for off in range(0, size, PIECE):
            if is_text(case, off, size):
                buf, line = text(rng, vocab, PIECE, line)
            else:
                buf = rng.randbytes(PIECE)
            f.write(buf)

def scatter(path, case, permille, seed):
    rng = random.Random(seed ^ 0x5ca7)
    vocab = vocabulary(random.Random(seed))
    size = os.path.getsize(path)
    blocks = size // BLOCK
    n = blocks * permille // 1000
    picked = sorted(rng.sample(range(blocks), n))
    line = 10**8
    with open(path, "r+b") as f:
        for b in picked:
            off = b * BLOCK
            if is_text(case, off, size):
                buf, line = text(rng, vocab, BLOCK, line)
            else:
                buf = rng.randbytes(BLOCK)
            f.seek(off)
            f.write(buf)
        f.flush()
        os.fsync(f.fileno())
    print(n, blocks)

cmd = sys.argv[1]
if cmd == "make":
    make(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
else:
    scatter(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
PY
VOLPY=/tmp/lifeline-failback-volume.$$.py
trap 'cleanup; rm -f "$VOLPY"' EXIT

results=()
for case in $CASES; do
    W=$(mktemp -d "$BENCH_DIR/lifeline-failback-XXXXXX")
    cd "$W"
    mkdir -p primary secondary
    echo "== case $case: ${SIZE_MIB} MiB volume in $W"
    "$LIFELINE" certs new --ca-dir ca --out tls --receiver-san 127.0.0.1 \
        --agent db1@acme --agent dr1@acme --agent planner@acme --admin ops >/dev/null
    "$LIFELINE" key new --out acme.key >/dev/null 2>&1
    python3 "$VOLPY" make primary/db.img "$SIZE_MIB" "$case" "$SEED"

    # The secondary site's receiver, and one replication cycle of the primary.
    "$LIFELINE" receiver --repo secondary/repo --listen 127.0.0.1:0 --tls-dir tls --allow db1=shop \
        >secondary-receiver.out 2>secondary-receiver.err &
    pids+=($!)
    for _ in $(seq 300); do grep -q listening secondary-receiver.out 2>/dev/null && break; sleep 0.1; done
    SPORT=$(sed -n 's/listening on 127.0.0.1://p' secondary-receiver.out)
    "$LIFELINE" agent --repo "https://127.0.0.1:$SPORT" --tls-dir tls --identity db1 --key-file acme.key \
        --group shop --volume db="$W/primary/db.img" --state-dir state-db1 --once | tee forward-agent.out

    PPORT=$(free_port)
    CPORT=$(free_port)
    cat >lifeline.toml <<EOF
state_dir = "$W/state"
key_file = "$W/acme.key"
[tls]
dir = "$W/tls"
identity = "planner"
admin = "ops"
[sites.primary]
repo = "$W/primary/repo"
receiver = "https://127.0.0.1:$PPORT"
[sites.secondary]
receiver = "https://127.0.0.1:$SPORT"
[groups.shop]
tenant = "acme"
volumes = { db = "$W/primary/db.img" }
targets = { db = "$W/secondary/db.img" }
reverse_agent = "dr1"
reverse_control = "127.0.0.1:$CPORT"
EOF
    cat >failover.toml <<'EOF'
[runbook]
name = "bench-failover"
group = "shop"
[[step]]
id = "promote"
action = "volume.promote"
[[step]]
id = "verify"
action = "check.volume"
volume = "db"
after = ["promote"]
EOF
    cat >failback.toml <<EOF
[runbook]
name = "bench-failback"
group = "shop"
[runbook.variables]
lifeline = "$LIFELINE"
tls = "$W/tls"
key = "$W/acme.key"
primary_repo = "$W/primary/repo"
[runbook.ports]
primary = $PPORT
reverse_control = $CPORT

[[step]]
id = "seed"
action = "replication.seed"

[[step]]
id = "primary-receiver"
action = "service.start"
command = "\${vars.lifeline}"
args = ["receiver", "--repo", "\${vars.primary_repo}", "--listen", "127.0.0.1:\${ports.primary}",
        "--tls-dir", "\${vars.tls}", "--allow", "dr1=\${group.name}"]
after = ["seed"]

[[step]]
id = "primary-receiver-up"
action = "check.tcp"
address = "127.0.0.1:\${ports.primary}"
after = ["primary-receiver"]

[[step]]
id = "reverse-agent"
action = "service.start"
command = "\${vars.lifeline}"
args = ["agent", "--repo", "https://127.0.0.1:\${ports.primary}", "--tls-dir", "\${vars.tls}",
        "--identity", "dr1", "--key-file", "\${vars.key}", "--group", "\${group.name}",
        "--state-dir", "\${run.dir}/reverse-agent", "--volume", "db=\${volumes.db}",
        "--interval", "1h", "--control", "127.0.0.1:\${ports.reverse_control}"]
after = ["primary-receiver-up"]

[[step]]
id = "reverse-agent-up"
action = "check.tcp"
address = "127.0.0.1:\${ports.reverse_control}"
after = ["reverse-agent"]

[[step]]
id = "final-sync"
action = "replication.final_sync"
after = ["reverse-agent-up"]

[[step]]
id = "stop-replication"
action = "replication.stop"
after = ["final-sync"]

[[step]]
id = "agent-io"
action = "check.command"
command = "cat"
args = ["/proc/\${steps.reverse-agent.pid}/io"]
after = ["stop-replication"]

[[step]]
id = "promote"
action = "volume.promote"
after = ["stop-replication"]

[[step]]
id = "verify"
action = "check.volume"
volume = "db"
after = ["promote"]

[[step]]
id = "stop-reverse-agent"
action = "service.stop"
step = "reverse-agent"
after = ["verify", "agent-io"]

[[step]]
id = "stop-primary-receiver"
action = "service.stop"
step = "primary-receiver"
after = ["stop-reverse-agent"]
EOF
    "$LIFELINE" failover failover.toml --config lifeline.toml --json >failover.jsonl
    tail -1 failover.jsonl | grep -q '"succeeded"' || { echo "failover failed: $(tail -3 failover.jsonl)"; exit 1; }
    read -r changed blocks < <(python3 "$VOLPY" scatter secondary/db.img "$case" "$OVERWRITE_PERMILLE" "$SEED")
    echo "overwrote $changed of $blocks blocks of 4 KiB on the recovered volume"

    t0=$(date +%s.%N)
    "$LIFELINE" failback failback.toml --config lifeline.toml --json >failback.jsonl || true
    t1=$(date +%s.%N)
    "$LIFELINE" runs --json --config lifeline.toml >runs.json
    run=$(tail -1 failback.jsonl | jq -r .run)
    status=$(jq -r --arg r "$run" '.[] | select(.id == $r) | .status' runs.json)
    if [[ $status != succeeded ]]; then
        echo "failback $run: $status"
        jq --arg r "$run" '.[] | select(.id == $r) | .steps | map_values({status, error})' runs.json
        exit 1
    fi
    step() { jq -r --arg r "$run" --arg s "$1" --arg o "$2" '.[] | select(.id == $r) | .steps[$s].outputs[$o]' runs.json; }
    log=$(step reverse-agent log)
    cmp -s primary/db.img secondary/db.img && identical=yes || identical=NO
    volume=$(stat -c %s secondary/db.img)
    seeded=$(step seed bytes_stored)
    wchar=$(step agent-io stdout | awk '/^wchar:/{print $2}')
    # Sums over the reverse agent's cycles: sealed bytes sent, chunk plaintext new.
    read -r sent new < <(python3 - "$log" <<'PY'
import re, sys
units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
sent = new = 0
for l in open(sys.argv[1]):
    m = re.match(r"cycle: point \d+ .* committed, ([\d.]+) (\w+) sent \(([\d.]+) (\w+) new\)", l)
    if m:
        sent += round(float(m.group(1)) * units[m.group(2)])
        new += round(float(m.group(3)) * units[m.group(4)])
print(sent, new)
PY
)
    grep '^cycle:' "$log" | sed 's/^/  reverse agent /'
    pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f%%", 100 * a / b}'; }
    echo "  seed stored $seeded bytes locally; zero_loss=$(step verify zero_loss); primary == recovered: $identical"
    echo "  sent (sealed objects): $sent bytes = $(pct "$sent" "$volume") of the volume"
    echo "  agent wchar (wire upper bound): $wchar bytes = $(pct "$wchar" "$volume")"
    echo "  new chunk plaintext: $new bytes = $((new / changed)) bytes per overwritten 4 KiB block"
    echo "  overwritten: $((changed * 4096)) bytes = $(pct $((changed * 4096)) "$volume"); failback took $(awk -v a="$t1" -v b="$t0" 'BEGIN{printf "%.1f", a-b}') s"
    results+=("| $case | $volume | $changed | $sent | $(pct "$sent" "$volume") | $wchar | $(pct "$wchar" "$volume") | $((new / changed)) | $identical |")
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
    cd /
    [[ $KEEP == 1 ]] || rm -rf "$W"
    W=
done

echo
echo "| case | volume bytes | 4 KiB blocks overwritten | sent (sealed) | sent / volume | agent wchar | wchar / volume | new plaintext per block | primary == recovered |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
