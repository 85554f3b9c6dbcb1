#!/usr/bin/env bash
# Drill RTO with `volume.promote` `instant = true` against a full promote, for
# sample-workload volumes of several sizes (README, "Instant drills").
#
# For each size: the sample workload (`lifeline workload run`) writes records
# for 2 s to a sparse volume of that size holding the same data whatever the
# size (its 8 MiB record ring and DATA of seeded random ballast); a backup of
# it into a local repository is the point; then `lifeline drill` of a runbook
# that promotes the volume (full, or instant with hydration off: the drill
# default), counts the application's data loss on the recovered copy
# (check.workload), starts the workload on it and waits for its health check.
# RTO is the drill report's (T0 → every check green); "service start" is
# T0 → the promote's end. check.volume (a hash of every byte) is left out: it
# reads the whole logical size in both modes and would hide the promote.
#
# Environment:
#   LIFELINE   path to the lifeline binary   (default target/release/lifeline)
#   BENCH_DIR  scratch directory             (default /var/tmp/lifeline-instant-bench)
#   SIZES      volume sizes                  (default "1G 20G")
#   DATA       ballast bytes in each volume  (default 256MiB)
#   RUNS       drills per figure (median)    (default 3)
# Needs nbdfuse and /dev/fuse, root (FUSE mounts), python3. Disk: about
# 3 × DATA per size (volume, repository, restored copy).
set -euo pipefail

LIFELINE=${LIFELINE:-target/release/lifeline}
[[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
BENCH_DIR=${BENCH_DIR:-/var/tmp/lifeline-instant-bench}
SIZES=${SIZES:-"1G 20G"}
DATA=${DATA:-256MiB}
RUNS=${RUNS:-3}

die() { echo "instant.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }
[[ -x $LIFELINE ]] || die "no lifeline binary at $LIFELINE (cargo build --release; or set LIFELINE=)"
for c in nbdfuse python3; do command -v $c >/dev/null || die "$c missing"; done
[[ -e /dev/fuse ]] || die "/dev/fuse missing"
[[ $(id -u) == 0 ]] || die "run as root (nbdfuse mounts)"
median() { python3 -c 'import sys,statistics; print("%.2f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
results=()
for size in $SIZES; do
  d=$BENCH_DIR/$size
  mkdir -p "$d"
  log "$size: workload volume with $DATA of data, backup"
  "$LIFELINE" key new --out "$d/key" >/dev/null
  "$LIFELINE" init --repo "$d/repo" --key-file "$d/key" >/dev/null
  "$LIFELINE" workload run --volume "$d/app.img" --size "$size" --ballast "$DATA" --listen 127.0.0.1:0 >/dev/null &
  wpid=$!
  sleep 2
  kill "$wpid"; wait "$wpid" 2>/dev/null || true
  "$LIFELINE" backup --repo "$d/repo" --key-file "$d/key" --group app --volume "app=$d/app.img" \
    --state-dir "$d/agent-state" >/dev/null
  cat >"$d/lifeline.toml" <<EOF
state_dir = "$d/state"
key_file = "$d/key"
[sites.secondary]
repo = "$d/repo"
[groups.app]
volumes = { app = "$d/app.img" }
targets = { app = "$d/restored/app.img" }
rpo = "1h"
rto = "5m"
EOF
  for mode in full instant; do
    instant=false; [[ $mode == instant ]] && instant=true
    cat >"$d/$mode.toml" <<EOF
[runbook]
name = "bench-$mode"
group = "app"
[runbook.ports]
app = 18080
[[step]]
id = "promote"
action = "volume.promote"
instant = $instant
[[step]]
id = "data-loss"
action = "check.workload"
volume = "app"
after = ["promote"]
[[step]]
id = "start"
action = "service.start"
command = "\${run.bin}"
args = ["workload", "run", "--volume", "\${steps.promote.path.app}", "--listen", "127.0.0.1:\${ports.app}"]
after = ["data-loss"]
[[step]]
id = "healthy"
action = "check.http"
url = "http://127.0.0.1:\${ports.app}/health"
timeout = "60s"
after = ["start"]
EOF
    rtos=(); starts=()
    for run in $(seq 1 "$RUNS"); do
      out=$("$LIFELINE" drill "$d/$mode.toml" --config "$d/lifeline.toml" --report-dir "$d/reports" --no-netns --json) \
        || die "drill $mode $size failed: $out"
      dir=$(python3 -c 'import sys,json
for l in sys.stdin:
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("event") == "drill_report": print(e["report_dir"])' <<<"$out")
      read -r rto start < <(python3 -c 'import sys,json
r = json.load(open(sys.argv[1] + "/report.json"))
print(r["achieved"]["rto_secs"], r["promote"]["service_start_secs"])' "$dir")
      log "$size $mode run $run: RTO $rto s, service start $start s"
      rtos+=("$rto"); starts+=("$start")
    done
    results+=("$(printf '%-6s %-8s %8s %14s' "$size" "$mode" "$(median "${rtos[@]}")" "$(median "${starts[@]}")")")
  done
  rm -rf "$d/restored" "$d/app.img"
done
printf '%-6s %-8s %8s %14s\n' size promote "RTO s" "service start"
printf '%s\n' "${results[@]}"
