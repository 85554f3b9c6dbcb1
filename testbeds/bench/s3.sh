#!/usr/bin/env bash
# Lifeline on S3 against the local directory, same data, same machine:
# `lifeline bench --s3` on the 3 GiB ext4 image `a.img` of compare.sh (built
# here the same way when absent), with a single-node Garage on loopback
# started for the run (compression off: packs are compressed and encrypted
# already). Prints the throughput of each, their ratio, and the S3 requests
# per GiB. Needs root (to drop the page cache) and `garage` (cargo install
# --locked garage).
set -euo pipefail

LIFELINE=${LIFELINE:-target/release/lifeline}
BENCH_DIR=${BENCH_DIR:-/var/tmp/lifeline-bench}
IMG_SIZE=${IMG_SIZE:-3G}
GARAGE=${GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}

die() { echo "s3.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (drops the page cache)"
[[ -x $GARAGE ]] || die "garage not found: cargo install --locked garage"
[[ $LIFELINE == /* ]] || LIFELINE=$PWD/$LIFELINE
[[ -x $LIFELINE ]] || die "lifeline binary not found at $LIFELINE"

mkdir -p "$BENCH_DIR/images"
IMG=$BENCH_DIR/images/a.img
if [[ ! -f $IMG ]]; then
    echo "== building $IMG ($IMG_SIZE ext4 of /usr/share)" >&2
    truncate -s "$IMG_SIZE" "$IMG" && mke2fs -q -t ext4 -b 4096 -d /usr/share "$IMG"
fi

G=$(mktemp -d /var/tmp/lifeline-garage-XXXXXX)
trap 'kill $(cat "$G/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$G"' EXIT
S3_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
RPC_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat >"$G/garage.toml" <<TOML
metadata_dir = "$G/meta"
data_dir = "$G/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"
TOML
export AWS_ACCESS_KEY_ID=GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
export AWS_SECRET_ACCESS_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
    "$GARAGE" -c "$G/garage.toml" server --single-node --default-access-key >"$G/log" 2>&1 &
echo $! >"$G/pid"
for _ in $(seq 100); do
    (echo >/dev/tcp/127.0.0.1/$S3_PORT) 2>/dev/null && break
    sleep 0.1
done
sleep 1
"$GARAGE" -c "$G/garage.toml" bucket create bench >/dev/null
"$GARAGE" -c "$G/garage.toml" bucket allow --read --write --owner bench --key "$AWS_ACCESS_KEY_ID" >/dev/null
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT AWS_REGION=garage

"$LIFELINE" bench --file "$IMG" --s3 s3://bench/run "$@"
