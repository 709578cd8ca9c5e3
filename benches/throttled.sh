#!/usr/bin/env bash
# Cold reads on a slow disk: the page cache dropped before every run, and the
# disk under the tree throttled to a number of read requests per second
# (cgroup v1 blkio, `blkio.throttle.read_iops_device`), as a spinning disk or
# a network volume with an I/O budget would be. Commands take turns run by
# run. Root only.
#
#   benches/throttled.sh TREE IOPS [RUNS] [THREADS...]
#
# TREE is a storage root (the directory holding docker/registry/v2), IOPS the
# read requests per second allowed, RUNS the turns (default 2), THREADS the
# --threads values to try beside the default (default: 2). Prints a Markdown
# table: wall seconds of each run, read requests issued, and the median.
set -euo pipefail

die() { echo "throttled.sh: $*" >&2; exit 1; }
[[ $# -ge 2 ]] || die "usage: benches/throttled.sh TREE IOPS [RUNS] [THREADS...]"
TREE=$(realpath "$1")
IOPS=$2
RUNS=${3:-2}
shift $(($# < 3 ? $# : 3))
THREADS=("${@:-2}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REGSWEEP=${REGSWEEP:-$ROOT/target/release/regsweep}
CGROUP=/sys/fs/cgroup/blkio/regsweep-throttled

[[ $(id -u) -eq 0 ]] || die "needs root (drop_caches, cgroups)"
[[ -d $TREE/docker/registry/v2 ]] || die "$TREE: no docker/registry/v2 below it"
[[ -x $REGSWEEP ]] || die "$REGSWEEP: not built (cargo build --release)"
[[ -d /sys/fs/cgroup/blkio ]] || die "no cgroup v1 blkio hierarchy at /sys/fs/cgroup/blkio"
command -v docker-registry >/dev/null || die "docker-registry not installed"

# The block device under the tree: a loop device or a whole disk, not a
# partition (the throttle applies where requests are queued).
source=$(findmnt -no SOURCE --target "$TREE")
devnum=$(lsblk -dno MAJ:MIN "$source" | tr -d ' ')
[[ -n $devnum ]] || die "cannot find the device of $TREE ($source)"
reads() { awk '{print $1}' "/sys/dev/block/$devnum/stat"; }

mkdir -p "$CGROUP"
echo "$devnum $IOPS" >"$CGROUP/blkio.throttle.read_iops_device"
trap 'echo "$devnum 0" >"$CGROUP/blkio.throttle.read_iops_device" 2>/dev/null || true' EXIT

config=$(mktemp --suffix=.yml)
cat >"$config" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $TREE
  delete:
    enabled: true
EOF

commands=("regsweep gc --dry-run (default threads)")
argv=("$REGSWEEP gc --dry-run $TREE")
for t in "${THREADS[@]}"; do
    commands+=("regsweep gc --dry-run --threads $t")
    argv+=("$REGSWEEP gc --dry-run --threads $t $TREE")
done
commands+=("docker-registry garbage-collect --dry-run" "floor: find blobs ∥ find repositories")
argv+=("docker-registry garbage-collect --dry-run $config"
    "find $TREE/docker/registry/v2/blobs -type f >/dev/null & find $TREE/docker/registry/v2/repositories -type f >/dev/null; wait")

declare -A times requests
for ((run = 1; run <= RUNS; run++)); do
    for i in "${!argv[@]}"; do
        sync
        echo 3 >/proc/sys/vm/drop_caches
        before=$(reads)
        start=$(date +%s.%N)
        # The command runs in the throttled group; this script does not.
        bash -c "echo \$\$ >$CGROUP/cgroup.procs; exec bash -c '${argv[$i]} >/dev/null 2>&1'" ||
            die "failed: ${argv[$i]}"
        end=$(date +%s.%N)
        times[$i]+="$(echo "$end - $start" | bc) "
        requests[$i]+="$(($(reads) - before)) "
    done
done
rm -f "$config"

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
files=$(find "$TREE" -type f | wc -l)
echo "Cold, reads throttled to $IOPS per second on $source ($devnum); $files files in $TREE; $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| command | median s | runs, s | read requests |"
echo "|---|---:|---|---:|"
for i in "${!argv[@]}"; do
    printf '| `%s` | %.2f | %s | %s |\n' "${commands[$i]}" "$(median <<<"${times[$i]}")" \
        "$(for t in ${times[$i]}; do printf '%.2f ' "$t"; done)" "$(median <<<"${requests[$i]}")"
done
