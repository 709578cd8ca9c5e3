#!/usr/bin/env bash
# regsweep vs upstream `registry garbage-collect` (docker-registry 2.8) on S3 storage:
# a synthetic registry (benches/synth.rs) uploaded to a bucket of a local S3 server
# (moto's, on 127.0.0.1), collected through the registry's own config.yml with
# `storage.s3`.
#
#   benches/s3-compare.sh [--repos N] [--workdir DIR] [--seed S] [--no-regsweep] [--no-sweep]
#
# Times and counts the S3 requests (by kind, from moto's record of the requests, one
# command at a time) of
#   - docker-registry garbage-collect --dry-run CONFIG
#   - regsweep gc --dry-run --min-age 0 CONFIG
#   - the -m sweeps, each on its own fresh copy of the tree in the bucket:
#     docker-registry garbage-collect -m CONFIG, regsweep gc -m -y --min-age 0 CONFIG
# and prints a Markdown table: wall seconds, exit status, requests by kind, requests per
# object of the tree, objects the command removed. Nothing is written outside the
# workdir. moto answers a few hundred requests a second, so the figures say how many
# requests each tool makes far more than how fast a real S3 would serve them.
#
# A command that fails (regsweep before its S3 backend, say) gets its exit status in the
# table and the tail of its stderr below it; the rest of the run carries on.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: benches/s3-compare.sh [options]

  --repos N          synth repositories (40 ~ 12k objects; 200 ~ 60k)   [40]
  --workdir DIR      tree, configs, moto's record and logs  [target/bench-s3]
  --seed S           synth seed                                         [1]
  --port P           moto's port on 127.0.0.1                  [a free one]
  --no-regsweep      upstream rows only
  --no-sweep         dry runs only
  -h, --help         this text

Environment: REGISTRY_BIN (default docker-registry), REGSWEEP_BIN (default
target/release/regsweep, built here with cargo build --release --locked;
given, it is timed as it is),
REGSWEEP_MOTO_SERVER (else moto_server on PATH, else
/opt/regsweep-moto/bin/moto_server; install with: python3 -m venv
/opt/regsweep-moto && /opt/regsweep-moto/bin/pip install 'moto[s3]' flask flask-cors).
EOF
}

die() { echo "s3-compare.sh: error: $*" >&2; exit 1; }
note() { echo "s3-compare.sh: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPOS=40
WORKDIR=$ROOT/target/bench-s3
SEED=1
PORT=
DO_REGSWEEP=1
DO_SWEEP=1
while (($#)); do
    case $1 in
        --repos) REPOS=${2:?--repos needs a value}; shift 2 ;;
        --repos=*) REPOS=${1#*=}; shift ;;
        --workdir) WORKDIR=${2:?--workdir needs a value}; shift 2 ;;
        --workdir=*) WORKDIR=${1#*=}; shift ;;
        --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
        --seed=*) SEED=${1#*=}; shift ;;
        --port) PORT=${2:?--port needs a value}; shift 2 ;;
        --port=*) PORT=${1#*=}; shift ;;
        --no-regsweep) DO_REGSWEEP=0; shift ;;
        --no-sweep) DO_SWEEP=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ $REPOS =~ ^[1-9][0-9]*$ ]] || die "--repos must be a positive number: $REPOS"
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a number: $SEED"
[[ -z $PORT || $PORT =~ ^[1-9][0-9]*$ ]] || die "--port must be a number: $PORT"

REGISTRY_BIN=${REGISTRY_BIN:-docker-registry}
BUILD_REGSWEEP=0
if [[ -z ${REGSWEEP_BIN:-} ]]; then
    BUILD_REGSWEEP=1
    REGSWEEP_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/regsweep
fi
command -v "$REGISTRY_BIN" >/dev/null || die "$REGISTRY_BIN not found (apt-get install docker-registry, or set REGISTRY_BIN)"
for tool in cargo curl date awk; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

MOTO=${REGSWEEP_MOTO_SERVER:-}
if [[ -z $MOTO ]]; then
    if command -v moto_server >/dev/null; then
        MOTO=moto_server
    elif [[ -x /opt/regsweep-moto/bin/moto_server ]]; then
        MOTO=/opt/regsweep-moto/bin/moto_server
    else
        die "moto_server not found (set REGSWEEP_MOTO_SERVER, or: python3 -m venv /opt/regsweep-moto && /opt/regsweep-moto/bin/pip install 'moto[s3]' flask flask-cors)"
    fi
fi
# The Python that runs moto has boto3 (moto depends on it): the helper runs there.
PYTHON=
moto_path=$(command -v "$MOTO") || die "$MOTO is not executable"
for candidate in "$(dirname "$moto_path")/python3" "$(dirname "$moto_path")/python" \
    "$(sed -n '1s/^#! *//p' "$moto_path" | awk '{ print $1 }')" python3; do
    if [[ -n $candidate ]] && "$candidate" -c 'import boto3' 2>/dev/null; then
        PYTHON=$candidate
        break
    fi
done
[[ -n $PYTHON ]] || die "no Python with boto3 next to $moto_path"
HELPER=("$PYTHON" "$ROOT/benches/s3_bench.py")

mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
LOGDIR=$WORKDIR/logs
mkdir -p "$LOGDIR"
NOTES=()

# ---------------------------------------------------------------- build

REGSWEEP_OK=$DO_REGSWEEP
if ((DO_REGSWEEP)); then
    if ((BUILD_REGSWEEP)); then
        note "building regsweep: cargo build --release --locked"
    fi
    if ((BUILD_REGSWEEP)) && ! (cd "$ROOT" && cargo build --release --locked) >"$LOGDIR/build.log" 2>&1; then
        REGSWEEP_OK=0
        NOTES+=("regsweep rows skipped: \`cargo build --release --locked\` failed: $(tail -n 3 "$LOGDIR/build.log" | tr '\n' ' ')")
    elif [[ ! -x $REGSWEEP_BIN ]]; then
        REGSWEEP_OK=0
        NOTES+=("regsweep rows skipped: $REGSWEEP_BIN not found after the build")
    else
        # A snapshot: a concurrent build must not swap the binary mid-benchmark.
        cp -p "$REGSWEEP_BIN" "$WORKDIR/regsweep"
        REGSWEEP_BIN=$WORKDIR/regsweep
    fi
fi

# synth through cargo bench; while the crate does not build (src/ under construction),
# benches/synth.rs alone in a scratch package with the same locked dependencies.
build_synth() {
    local exe pkg=$WORKDIR/synth-standalone
    if exe=$(cd "$ROOT" && cargo bench --locked --bench synth --no-run --message-format=json 2>"$LOGDIR/synth-build.log" |
        grep '"kind":\["bench"\]' | grep '"name":"synth"' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1) && [[ -n $exe && -x $exe ]]; then
        SYNTH_BIN=$exe
        return
    fi
    note "cargo bench --bench synth did not build (see $LOGDIR/synth-build.log); building it standalone"
    mkdir -p "$pkg"
    dep_version() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"; }
    cat >"$pkg/Cargo.toml" <<EOF
[package]
name = "synth-standalone"
version = "0.0.0"
edition = "2024"
publish = false

[[bin]]
name = "synth"
path = "$ROOT/benches/synth.rs"

[dependencies]
rayon = "=$(dep_version rayon)"
sha2 = "=$(dep_version sha2)"
hex = "=$(dep_version hex)"

[workspace]
EOF
    cp "$ROOT/Cargo.lock" "$pkg/Cargo.lock"
    (cd "$pkg" && cargo build --release --offline) >>"$LOGDIR/synth-build.log" 2>&1 ||
        die "cannot build benches/synth.rs (see $LOGDIR/synth-build.log)"
    SYNTH_BIN=$pkg/target/release/synth
}

TREE=$WORKDIR/tree-r$REPOS-s$SEED
if [[ -d $TREE/docker/registry/v2/repositories && -s $TREE.summary ]]; then
    note "tree: cached at $TREE"
else
    build_synth
    note "tree: generating $REPOS repositories at $TREE"
    rm -rf "$TREE" "$TREE.summary"
    "$SYNTH_BIN" --out "$TREE" --repos "$REPOS" --seed "$SEED" >"$TREE.summary.tmp" ||
        die "synth failed for --repos $REPOS"
    mv "$TREE.summary.tmp" "$TREE.summary"
fi
OBJECTS=$(find "$TREE/docker" -type f | wc -l)

# ---------------------------------------------------------------- moto

if [[ -z $PORT ]]; then
    PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
ENDPOINT=http://127.0.0.1:$PORT
RECORDING=$WORKDIR/requests.jsonl
rm -f "$RECORDING"
note "starting $MOTO on $ENDPOINT (log: $LOGDIR/moto.log)"
MOTO_RECORDER_FILEPATH=$RECORDING "$MOTO" -H 127.0.0.1 -p "$PORT" >"$LOGDIR/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
for ((i = 0; ; i++)); do
    curl -s -o /dev/null --noproxy '*' "$ENDPOINT/moto-api/" && break
    kill -0 "$MOTO_PID" 2>/dev/null || die "moto_server exited: $(tail -n 5 "$LOGDIR/moto.log")"
    ((i < 300)) || die "moto_server did not answer within 30 s"
    sleep 0.1
done
moto_api() { curl -sf -o /dev/null --noproxy '*' -X POST "$ENDPOINT/moto-api/recorder/$1"; }
BUCKET=regsweep-bench
"${HELPER[@]}" "$ENDPOINT" mkbucket "$BUCKET"

# fresh BUCKET: a new bucket with a copy (server-side) of the uploaded tree.
fresh() {
    local n
    n=$("${HELPER[@]}" "$ENDPOINT" copy "$BUCKET" "$1")
    note "copied $n objects to bucket $1"
}

write_config() { # write_config BUCKET FILE
    cat >"$2" <<EOF
version: 0.1
log:
  level: error
storage:
  s3:
    accesskey: bench
    secretkey: bench-secret
    region: us-east-1
    regionendpoint: $ENDPOINT
    bucket: $1
    rootdirectory: /registry
    secure: false
    v4auth: true
  delete:
    enabled: true
EOF
}

# ---------------------------------------------------------------- runs

ROWS=()
# timed NAME BUCKET CMD...: runs CMD with moto recording, records a table row.
timed() {
    local name=$1 bucket=$2 started finished code=0 counts before after log
    shift 2
    log=$LOGDIR/$(tr -c 'a-zA-Z0-9\n' '-' <<<"$name" | tr -s '-').log
    before=$("${HELPER[@]}" "$ENDPOINT" count "$bucket")
    moto_api reset-recording
    moto_api start-recording
    started=$(date +%s.%N)
    # 2.8's s3 driver fails at start when AWS_CA_BUNDLE names a bundle.
    env -u AWS_CA_BUNDLE "$@" >"$log" 2>&1 || code=$?
    finished=$(date +%s.%N)
    moto_api stop-recording
    counts=$("${HELPER[@]}" requests "$RECORDING")
    after=$("${HELPER[@]}" "$ENDPOINT" count "$bucket")
    if ((code != 0)); then
        NOTES+=("\`$name\` exited $code: $(tail -n 3 "$log" | tr '\n' ' ' | cut -c1-400)")
    fi
    ROWS+=("$(
        "$PYTHON" - "$name" "$code" "$started" "$finished" "$OBJECTS" "$before" "$after" "$counts" <<'EOF'
import json, sys
name, code, started, finished, objects, before, after, counts = sys.argv[1:]
c = json.loads(counts)
kinds = ["LIST", "GET", "HEAD", "PUT", "COPY", "DELETE", "DeleteObjects", "multipart", "other"]
cells = [name, f"{float(finished) - float(started):.1f}", code]
cells += [str(c[k]) for k in kinds]
batch = c["keys_in_DeleteObjects"]
cells[-3] = f"{c['DeleteObjects']} ({batch} keys)" if c["DeleteObjects"] else "0"
cells += [str(c["total"]), f"{c['total'] / int(objects):.2f}", str(int(before) - int(after))]
print("| " + " | ".join(cells) + " |")
EOF
    )")
    note "${ROWS[-1]}"
}

started=$(date +%s.%N)
n=$("${HELPER[@]}" "$ENDPOINT" upload "$BUCKET" "$TREE" registry)
note "uploaded $n objects in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
write_config "$BUCKET" "$WORKDIR/config.yml"

timed "upstream garbage-collect --dry-run" "$BUCKET" \
    "$REGISTRY_BIN" garbage-collect --dry-run "$WORKDIR/config.yml"
if ((REGSWEEP_OK)); then
    timed "regsweep gc --dry-run --min-age 0" "$BUCKET" \
        "$REGSWEEP_BIN" gc --dry-run --min-age 0 "$WORKDIR/config.yml"
fi
if ((DO_SWEEP)); then
    fresh upstream-m
    write_config upstream-m "$WORKDIR/config-upstream-m.yml"
    timed "upstream garbage-collect -m" upstream-m \
        "$REGISTRY_BIN" garbage-collect --delete-untagged "$WORKDIR/config-upstream-m.yml"
    if ((REGSWEEP_OK)); then
        fresh regsweep-m
        write_config regsweep-m "$WORKDIR/config-regsweep-m.yml"
        timed "regsweep gc -m -y --min-age 0" regsweep-m \
            "$REGSWEEP_BIN" gc -m -y --min-age 0 "$WORKDIR/config-regsweep-m.yml"
    fi
fi

# ---------------------------------------------------------------- report

echo "## S3: regsweep vs upstream garbage-collect (moto on 127.0.0.1)"
echo
echo "Tree: synth --repos $REPOS --seed $SEED: $OBJECTS objects ($(sed -n 's/^manifests=//p' "$TREE.summary") manifests, $(sed -n 's/^blobs=//p' "$TREE.summary") blobs). $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| command | wall s | exit | LIST | GET | HEAD | PUT | COPY | DELETE | DeleteObjects | multipart | other | requests | requests/object | objects removed |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${ROWS[@]}"
if ((${#NOTES[@]})); then
    echo
    printf -- '- %s\n' "${NOTES[@]}"
fi
