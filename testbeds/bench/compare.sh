#!/usr/bin/env bash
# Benchmark lifeline against restic and borg on the same ext4 filesystem images,
# in the same run, on the same machine. See testbeds/bench/README.md.
#
# Environment:
#   LIFELINE       path to the lifeline binary   (default target/release/lifeline)
#   BENCH_DIR      scratch/work directory          (default /var/tmp/lifeline-bench)
#   IMG_SIZE       size of each image              (default 3G; must be > 64M)
#   SKIP_LIFELINE  1 = run only restic and borg    (default 0)
#   TOOLS          space-separated tool list       (default "lifeline restic borg";
#                  "borg-fixed" = borg with its disk-image settings, see README)
#   A_SRC, B_SRC   source trees for a.img / b.img  (default: first of a candidate list that fits)
#   SEED           RNG seed for the modification   (default 20240601)
#   BORG_SPARSE_EXTRACT  1 = `borg extract --sparse` (default 1)
#   VERIFY         1 = cmp every restored file against c.img (default 1)
#
# Must run as root (drop_caches). Results also go to $BENCH_DIR/results-<time>.md.
set -euo pipefail

LIFELINE=${LIFELINE:-target/release/lifeline}
BENCH_DIR=${BENCH_DIR:-/var/tmp/lifeline-bench}
IMG_SIZE=${IMG_SIZE:-3G}
SKIP_LIFELINE=${SKIP_LIFELINE:-0}
SEED=${SEED:-20240601}
BORG_SPARSE_EXTRACT=${BORG_SPARSE_EXTRACT:-1}
VERIFY=${VERIFY:-1}
PASS=x
if [[ -z ${TOOLS:-} ]]; then
    TOOLS="lifeline restic borg"
fi
if [[ $SKIP_LIFELINE == 1 ]]; then
    TOOLS=$(tr ' ' '\n' <<<"$TOOLS" | { grep -vx lifeline || true; } | tr '\n' ' ')
fi
read -r -a TOOL_LIST <<<"$TOOLS"

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

[[ $(id -u) == 0 ]] || die "must run as root (needs /proc/sys/vm/drop_caches)"
for t in "${TOOL_LIST[@]}"; do
    case $t in
    lifeline)
        [[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
        [[ -x $LIFELINE ]] || die "lifeline binary not found at $LIFELINE (set LIFELINE=, or SKIP_LIFELINE=1)" ;;
    restic) command -v restic >/dev/null || die "restic missing: apt-get install -y restic" ;;
    borg | borg-fixed) command -v borg >/dev/null || die "borg missing: apt-get install -y borgbackup" ;;
    *) die "unknown tool '$t' in TOOLS" ;;
    esac
done
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
fi
for c in python3 mke2fs truncate du cmp numfmt; do
    command -v "$c" >/dev/null || die "$c missing"
done

IMG_BYTES=$(numfmt --from=iec "$IMG_SIZE")
((IMG_BYTES > 2 * 64 * 1048576)) || die "IMG_SIZE must be > 128M (the change includes a 64 MiB region)"
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
IMG=$BENCH_DIR/images
mkdir -p "$IMG"
# worst case: 3 images + one non-sparse restore + repositories
free_kib=$(df -Pk "$BENCH_DIR" | awk 'NR==2{print $4}')
((free_kib * 1024 >= 6 * IMG_BYTES)) || log "WARNING: only $((free_kib / 1024)) MiB free in $BENCH_DIR; want ~6 × $IMG_SIZE"

# ---------------------------------------------------------------- images
# A source tree fits if its allocated size is <= 70% of the image and its
# entry count is <= 80% of the inodes mke2fs gives at 16 KiB/inode.
fits() {
    local d=$1 kib n
    [[ -d $d ]] || return 1
    kib=$(du -sk "$d" 2>/dev/null | cut -f1)
    n=$(find "$d" -xdev 2>/dev/null | wc -l)
    log "candidate $(du -sh "$d" 2>/dev/null | cut -f1) $n entries: $d"
    ((kib * 1024 * 100 <= IMG_BYTES * 70 && n * 16384 * 100 <= IMG_BYTES * 80))
}
pick_src() { # pick_src NAME candidates...
    local name=$1 d
    shift
    for d in "$@"; do
        if fits "$d"; then
            echo "$d"
            return 0
        fi
    done
    die "no source tree for $name fits in $IMG_SIZE (set ${name}_SRC=)"
}

if [[ -n ${A_SRC:-} ]]; then fits "$A_SRC" || die "A_SRC=$A_SRC does not fit in $IMG_SIZE"; else
    A_SRC=$(pick_src A /usr/share /usr/share/doc /usr/share/locale /usr/share/man)
fi
if [[ -n ${B_SRC:-} ]]; then fits "$B_SRC" || die "B_SRC=$B_SRC does not fit in $IMG_SIZE"; else
    B_SRC=$(pick_src B /usr/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/bin /usr/include /usr/lib/gcc)
fi
[[ $A_SRC != "$B_SRC" ]] || die "A_SRC and B_SRC must differ"
log "a.img <- $A_SRC   b.img <- $B_SRC   ($IMG_SIZE each)"

PARAMS="size=$IMG_BYTES a=$A_SRC b=$B_SRC seed=$SEED v=1"
if [[ ! -f $IMG/params || $(cat "$IMG/params") != "$PARAMS" || ! -f $IMG/a.img || ! -f $IMG/b.img || ! -f $IMG/c.img || ! -f $IMG/c.overwritten ]]; then
    log "building images in $IMG"
    rm -f "$IMG"/{a,b,c}.img "$IMG/params" "$IMG/c.overwritten"
    # -b 4096: the default for >=512M anyway; keeps small smoke-test images comparable.
    truncate -s "$IMG_SIZE" "$IMG/a.img" && mke2fs -q -t ext4 -b 4096 -d "$A_SRC" "$IMG/a.img"
    truncate -s "$IMG_SIZE" "$IMG/b.img" && mke2fs -q -t ext4 -b 4096 -d "$B_SRC" "$IMG/b.img"
    cp --sparse=always "$IMG/a.img" "$IMG/c.img"
    # 1% of the 4 KiB blocks at scattered random offsets + one 64 MiB
    # contiguous region; offsets from a seeded RNG, data from os.urandom.
    python3 - "$IMG/c.img" "$SEED" >"$IMG/c.overwritten" <<'PY'
import os, random, sys
path, seed = sys.argv[1], int(sys.argv[2])
BS, BIG = 4096, 64 << 20
size = os.path.getsize(path)
nblk = size // BS
rng = random.Random(seed)
scattered = rng.sample(range(nblk), nblk // 100)
big_first = rng.randrange(0, nblk - BIG // BS + 1)
fd = os.open(path, os.O_WRONLY)
try:
    for b in sorted(scattered):
        os.pwrite(fd, os.urandom(BS), b * BS)
    for off in range(0, BIG, 1 << 20):
        os.pwrite(fd, os.urandom(1 << 20), big_first * BS + off)
    os.fsync(fd)
finally:
    os.close(fd)
touched = set(scattered) | set(range(big_first, big_first + BIG // BS))
print(len(touched) * BS)
print(f"scattered={len(scattered)} blocks, 64MiB region at offset {big_first * BS}, "
      f"unique bytes overwritten={len(touched) * BS}", file=sys.stderr)
PY
    echo "$PARAMS" >"$IMG/params"
fi
OVERWRITTEN=$(head -1 "$IMG/c.overwritten")
log "c.img = a.img with $OVERWRITTEN bytes ($(numfmt --to=iec-i "$OVERWRITTEN")B) overwritten"
for f in a b c; do
    log "$f.img: apparent $(du -h --apparent-size "$IMG/$f.img" | cut -f1), allocated $(du -h "$IMG/$f.img" | cut -f1)"
done

# ---------------------------------------------------------------- helpers
declare -A R # R[tool.key] = value

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
repo_bytes() { du -sb "$1" | cut -f1; }

# timed TOOL STEP cmd... : drop caches, run, record R[TOOL.STEP.t] (s) and .rss (KiB).
timed() {
    local tool=$1 step=$2 out
    shift 2
    out=$BENCH_DIR/$tool/log/$step
    printf '%q ' "$@" >"$out.cmd"
    drop_caches
    if ! /usr/bin/time -o "$out.time" -f '%e %M' "$@" >"$out.out" 2>"$out.err"; then
        echo "---- $tool $step failed: $*" >&2
        tail -20 "$out.err" "$out.out" >&2
        die "$tool $step failed"
    fi
    read -r "R[$tool.$step.t]" "R[$tool.$step.rss]" < <(tail -1 "$out.time")
    log "$tool $step: ${R[$tool.$step.t]} s, peak RSS ${R[$tool.$step.rss]} KiB"
}

# Per-tool commands. All run with cwd = $W (the tool's work dir holding
# a.img and b.img as hard links to the shared images).
init_tool() {
    case $1 in
    lifeline)
        "$LIFELINE" key new --out "$T/key"
        "$LIFELINE" init --repo "$T/repo" --key-file "$T/key" ;;
    restic)
        RESTIC_PASSWORD=$PASS restic --cache-dir "$T/cache" init --repo "$T/repo"
        RESTIC_PASSWORD=$PASS restic --cache-dir "$T/cache" -r "$T/repo" cat config ;;
    borg | borg-fixed)
        borg init -e repokey-blake2 "$T/repo" ;;
    esac
}
backup() { # backup TOOL STEP
    local tool=$1 step=$2
    case $tool in
    lifeline)
        timed "$tool" "$step" "$LIFELINE" backup --repo "$T/repo" --key-file "$T/key" --group bench \
            --volume "a=$W/a.img" --volume "b=$W/b.img" --state-dir "$T/state" --json ;;
    restic)
        timed "$tool" "$step" env RESTIC_PASSWORD=$PASS restic --cache-dir "$T/cache" -r "$T/repo" \
            backup "$W/a.img" "$W/b.img" ;;
    borg)
        timed "$tool" "$step" borg create --stats --compression zstd,3 "$T/repo::$step" a.img b.img ;;
    borg-fixed)
        timed "$tool" "$step" borg create --stats --compression zstd,3 \
            --chunker-params fixed,4194304 --sparse "$T/repo::$step" a.img b.img ;;
    esac
}
restore_a() { # restore_a TOOL DIR  (latest point/snapshot/archive, volume/file a only)
    local tool=$1 dir=$2 sparse=()
    [[ $BORG_SPARSE_EXTRACT == 1 ]] && sparse=(--sparse)
    case $tool in
    lifeline)
        timed "$tool" restore "$LIFELINE" restore --repo "$T/repo" --key-file "$T/key" --group bench \
            --volume a --to "$dir/a.img" ;;
    restic)
        timed "$tool" restore env RESTIC_PASSWORD=$PASS restic --cache-dir "$T/cache" -r "$T/repo" \
            restore latest --target "$dir" --include "$W/a.img" ;;
    borg | borg-fixed)
        cd "$dir" # no subshell: timed must set R[] in this shell
        timed "$tool" restore borg extract "${sparse[@]}" "$T/repo::change" a.img ;;
    esac
}

export BORG_PASSPHRASE=$PASS BORG_DISPLAY_PASSPHRASE=n

# ---------------------------------------------------------------- run
for tool in "${TOOL_LIST[@]}"; do
    T=$BENCH_DIR/$tool
    W=$T/work
    log "------------------------------------------------ $tool"
    rm -rf "$T"
    mkdir -p "$T/log" "$W" "$T/restore"
    export BORG_BASE_DIR=$T/borgbase # fresh borg cache/security dir per run
    ln "$IMG/a.img" "$W/a.img"
    ln "$IMG/b.img" "$W/b.img"
    cd "$W"
    init_tool "$tool" >"$T/log/init.out" 2>&1 || { cat "$T/log/init.out" >&2; die "$tool init failed"; }
    [[ -e $T/repo ]] || die "$tool init exited 0 but created no repository at $T/repo (see $T/log/init.out)"

    # a) first backup of both images
    r0=$(repo_bytes "$T/repo")
    backup "$tool" first
    r1=$(repo_bytes "$T/repo")
    R[$tool.first.stored]=$((r1 - r0))

    # b) unchanged re-backup (restic: touch so it re-reads; others as they are)
    [[ $tool == restic ]] && touch "$W/a.img" "$W/b.img"
    backup "$tool" same
    r2=$(repo_bytes "$T/repo")
    R[$tool.same.stored]=$((r2 - r1))

    # c) a.img now has c.img's content (same path / volume name)
    rm -f "$W/a.img"
    ln "$IMG/c.img" "$W/a.img"
    backup "$tool" change
    r3=$(repo_bytes "$T/repo")
    R[$tool.change.stored]=$((r3 - r2))
    R[$tool.repo]=$r3

    # d) restore a.img from the latest point to an empty dir
    restore_a "$tool" "$T/restore"
    cd "$BENCH_DIR"
    mapfile -t found < <(find "$T/restore" -type f)
    ((${#found[@]} == 1)) || die "$tool restore: expected 1 file under $T/restore, found ${#found[@]}: ${found[*]}"
    R[$tool.alloc]=$(du -k "${found[0]}" | cut -f1)
    R[$tool.apparent]=$(du -k --apparent-size "${found[0]}" | cut -f1)
    if [[ $VERIFY == 1 ]]; then
        if cmp -s "${found[0]}" "$IMG/c.img"; then R[$tool.verify]=ok; else R[$tool.verify]=MISMATCH; fi
        log "$tool restore verify: ${R[$tool.verify]}"
    fi
    if [[ $tool == lifeline ]]; then
        for s in first same change; do
            R[$tool.$s.json]=$(grep -E '^\s*\{' "$T/log/$s.out" | tail -1 || true)
            [[ -n ${R[$tool.$s.json]} ]] || log "WARNING: lifeline backup ($s) printed no JSON object on stdout"
            log "lifeline $s: ${R[$tool.$s.json]}"
        done
    fi
    rm -rf "$T/restore" # restored image can be IMG_SIZE of real blocks
    rm -f "$W/a.img" "$W/b.img"
done

# ---------------------------------------------------------------- report
mib() { awk -v b="$1" 'BEGIN{ if (b < 1048576) printf "%.1f KiB", b/1024; else printf "%.1f MiB", b/1048576 }'; }
sec() { awk -v s="$1" 'BEGIN{printf "%.2f s", s}'; }
# ratio BEST LIFELINE -> "x.yz×" (how many times lifeline is better when > 1)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f×", a/b; else print "-" }'; }

have_ll=0
others=()
for t in "${TOOL_LIST[@]}"; do
    if [[ $t == lifeline ]]; then have_ll=1; else others+=("$t"); fi
done

# row LABEL KEY FORMAT  (numeric rows; ratio = min over others / lifeline)
row() {
    local label=$1 key=$2 fmt=$3 t line best=""
    line="| $label |"
    for t in "${TOOL_LIST[@]}"; do
        line+=" $($fmt "${R[$t.$key]}") |"
    done
    for t in "${others[@]}"; do
        if [[ -z $best ]] || awk -v a="${R[$t.$key]}" -v b="$best" 'BEGIN{exit !(a < b)}'; then best=${R[$t.$key]}; fi
    done
    if ((have_ll)) && [[ -n $best ]]; then line+=" $(ratio "$best" "${R[lifeline.$key]}") |"; else line+=" - |"; fi
    echo "$line"
}
rowtext() { # rowtext LABEL (values from function)
    local label=$1 fn=$2 t line
    line="| $label |"
    for t in "${TOOL_LIST[@]}"; do line+=" $($fn "$t") |"; done
    echo "$line - |"
}

for t in "${TOOL_LIST[@]}"; do
    R[$t.change.ratio]=$(awk -v a="${R[$t.change.stored]}" -v b="$OVERWRITTEN" 'BEGIN{printf "%.4f", a/b}')
    m=0
    for s in first same change restore; do ((${R[$t.$s.rss]} > m)) && m=${R[$t.$s.rss]}; done
    R[$t.peakrss]=$((m * 1024))
done
x() { awk -v v="$1" 'BEGIN{printf "%.2f×", v}'; }
sparse_cell() {
    local t=$1 s=no
    ((${R[$t.alloc]} * 10 < ${R[$t.apparent]} * 9)) && s=yes
    echo "$s ($(mib $((R[$t.alloc] * 1024))) of $(mib $((R[$t.apparent] * 1024))))"
}
verify_cell() { echo "${R[$1.verify]:-not checked}"; }

REPORT=$BENCH_DIR/results-$(date +%Y%m%d-%H%M%S).md
{
    echo "### lifeline vs restic vs borg — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
    echo
    echo "Images: 2 × $IMG_SIZE ext4 (a.img ← $A_SRC, $(du -h "$IMG/a.img" | cut -f1) allocated; b.img ← $B_SRC, $(du -h "$IMG/b.img" | cut -f1) allocated)."
    echo "Change: 1% of 4 KiB blocks scattered + one 64 MiB region = $(mib "$OVERWRITTEN") overwritten (seed $SEED)."
    echo "Versions: restic $(restic version | awk '{print $2}'), borg $(borg --version | awk '{print $2}')$( ((have_ll)) && echo ", lifeline: $("$LIFELINE" --version 2>/dev/null | head -1 || echo '?')")."
    echo "Page cache dropped before every timed step. Bytes stored = growth of \`du -sb\` of the repository."
    echo
    hdr="| step |"
    sep="|---|"
    for t in "${TOOL_LIST[@]}"; do hdr+=" $t |"; sep+="---:|"; done
    echo "$hdr best of others ÷ lifeline |"
    echo "$sep---:|"
    row "first backup, 2 images: time" first.t sec
    row "first backup: bytes stored" first.stored mib
    row "unchanged re-backup: time" same.t sec
    row "unchanged re-backup: bytes stored" same.stored mib
    row "1%+64MiB change: time" change.t sec
    row "1%+64MiB change: bytes stored" change.stored mib
    row "1%+64MiB change: stored ÷ overwritten" change.ratio x
    row "restore a.img: time" restore.t sec
    rowtext "restore a.img: sparse (allocated of apparent)" sparse_cell
    rowtext "restore a.img: content = c.img" verify_cell
    row "peak RSS (max over steps)" peakrss mib
    echo
    if ((have_ll)); then
        echo "lifeline --json: first \`${R[lifeline.first.json]:-}\`; same \`${R[lifeline.same.json]:-}\`; change \`${R[lifeline.change.json]:-}\`"
        echo
    fi
    echo "Ratio column: min(others) ÷ lifeline — above 1 means lifeline is faster / stores less / uses less memory."
} | tee "$REPORT"
for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done | sort >"${REPORT%.md}.tsv"
log "report written to $REPORT; logs under $BENCH_DIR/<tool>/log"
