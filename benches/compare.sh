#!/usr/bin/env bash
# regsweep vs upstream `registry garbage-collect` (docker-registry 2.8) vs the `find` floor,
# on synthetic registries written by benches/synth.rs.
#
#   benches/compare.sh [--sizes 200,2000,4000] [--runs 5] [--sweep-runs 3] [--workdir DIR] [--cold]
#
# For each size (number of repositories; 200 ~ 60k files, 2000 ~ 600k, 4000 ~ 1.2M):
# generate the tree once (cached in the workdir), warm the page cache, then time
#   - regsweep gc --dry-run TREE, and with -m (the JSON reports of an extra, untimed run
#     are checked against what synth wrote)
#   - docker-registry garbage-collect --dry-run config.yml, and with -m
#   - the walk floor: `find blobs -type f` + `find repositories -type f` in parallel,
#     and a single `find . -type f`
#   - the real sweep: regsweep gc -m -y vs docker-registry garbage-collect -m, each on a
#     fresh copy of the tree (copied, synced, warmed and settled outside the
#     timing), taking turns, and the sweep floor: the files and directories regsweep
#     removed, removed by 16 parallel `rm`s and `rmdir`s, on a fresh copy too
# With --cold, the page cache is dropped before every timed run (and nothing is warmed):
# what a registry host that has not read its storage lately sees.
# reporting the median wall time of the runs, the median CPU time (user + system, the
# command's and its children's), the ratios against upstream and against the parallel
# find floor, and the peak RSS (GNU time %M, max over the runs) and RSS bytes per file
# of the tree. For each sweep it also reports the bound the CPU time sets: on this many
# CPUs, a sweep that needs C s of CPU cannot take less than C / CPUs of wall time. The Markdown report goes to stdout and to
# benches/results/latest.md (raw runs: benches/results/latest.tsv).
#
# A command that fails (e.g. regsweep while it is under construction) is reported as
# skipped with the tail of its stderr; the rest of the run carries on. The report is
# rewritten after every size, so an interrupted run leaves the sizes it finished
# (and --report-only rebuilds it from the raw runs).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: benches/compare.sh [options]

  --sizes LIST       comma-separated repository counts           [2000]
                     (200 ~ 60k files, 2000 ~ 600k, 4000 ~ 1.2M)
  --runs N           timed runs per read-only command (median)   [5]
  --sweep-runs N     timed runs per real sweep (each on a fresh copy) [3]
  --no-sweep         skip the real-sweep rows
  --sweep-sizes LIST sizes that get the real-sweep rows     [all of --sizes]
  --no-regsweep      skip the regsweep rows (upstream and find only)
  --cold             drop the page cache before every timed run (root: writes
                     /proc/sys/vm/drop_caches; skipped with a message otherwise)
  --workdir DIR      trees, copies, configs and logs    [target/bench]
  --seed S           synth seed                                  [1]
  --out FILE         Markdown report      [benches/results/latest.md]
  --report-only      measure nothing: rebuild the report from the raw runs
                     (FILE.tsv) and saved outputs of an earlier, possibly
                     interrupted run with the same --workdir, --sizes, --out
  -h, --help         this text

Environment: REGISTRY_BIN (default docker-registry), REGSWEEP_BIN (default
target/release/regsweep, built here with cargo build --release --locked).
EOF
}

die() { echo "compare.sh: error: $*" >&2; exit 1; }
note() { echo "compare.sh: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES=2000
RUNS=5
SWEEP_RUNS=3
DO_SWEEP=1
SWEEP_SIZES=
DO_REGSWEEP=1
REPORT_ONLY=0
COLD=0
WORKDIR=$ROOT/target/bench
SEED=1
OUT=$ROOT/benches/results/latest.md

while (($#)); do
    case $1 in
        --sizes) SIZES=${2:?--sizes needs a value}; shift 2 ;;
        --sizes=*) SIZES=${1#*=}; shift ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --sweep-runs) SWEEP_RUNS=${2:?--sweep-runs needs a value}; shift 2 ;;
        --sweep-runs=*) SWEEP_RUNS=${1#*=}; shift ;;
        --no-sweep) DO_SWEEP=0; shift ;;
        --sweep-sizes) SWEEP_SIZES=${2:?--sweep-sizes needs a value}; shift 2 ;;
        --sweep-sizes=*) SWEEP_SIZES=${1#*=}; shift ;;
        --no-regsweep) DO_REGSWEEP=0; shift ;;
        --cold) COLD=1; shift ;;
        --report-only) REPORT_ONLY=1; shift ;;
        --workdir) WORKDIR=${2:?--workdir needs a value}; shift 2 ;;
        --workdir=*) WORKDIR=${1#*=}; shift ;;
        --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
        --seed=*) SEED=${1#*=}; shift ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ $SIZES =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--sizes must be a comma-separated list of numbers: $SIZES"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number: $RUNS"
[[ $SWEEP_RUNS =~ ^[1-9][0-9]*$ ]] || die "--sweep-runs must be a positive number: $SWEEP_RUNS"
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a number: $SEED"
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
if ((COLD && !REPORT_ONLY)) && [[ ! -w /proc/sys/vm/drop_caches ]]; then
    echo "compare.sh: --cold skipped: the page cache cannot be dropped here (writing /proc/sys/vm/drop_caches needs root)" >&2
    exit 0
fi

REGISTRY_BIN=${REGISTRY_BIN:-docker-registry}
REGSWEEP_BIN=${REGSWEEP_BIN:-$ROOT/target/release/regsweep}
TIME_BIN=/usr/bin/time
command -v "$REGISTRY_BIN" >/dev/null || die "$REGISTRY_BIN not found (apt-get install docker-registry, or set REGISTRY_BIN)"
[[ -x $TIME_BIN ]] || die "$TIME_BIN (GNU time) not found (apt-get install time)"
for tool in cargo find cp awk date sync; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

mkdir -p "$WORKDIR" "$(dirname "$OUT")"
WORKDIR=$(cd "$WORKDIR" && pwd)
LOGDIR=$WORKDIR/logs
mkdir -p "$LOGDIR"
RAW=${OUT%.md}.tsv
NOTES=()
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- build

REGSWEEP_OK=$DO_REGSWEEP
if ((DO_REGSWEEP && !REPORT_ONLY)); then
    note "building regsweep: cargo build --release --locked"
    if ! (cd "$ROOT" && cargo build --release --locked) >"$LOGDIR/build.log" 2>&1; then
        REGSWEEP_OK=0
        NOTES+=("regsweep rows skipped: \`cargo build --release --locked\` failed: $(tail -n 3 "$LOGDIR/build.log" | tr '\n' ' ')")
        note "regsweep build failed (see $LOGDIR/build.log); regsweep rows will be skipped"
    elif [[ ! -x $REGSWEEP_BIN ]]; then
        REGSWEEP_OK=0
        NOTES+=("regsweep rows skipped: $REGSWEEP_BIN not found after the build")
    else
        # Snapshot the binary: a concurrent cargo build must not swap it mid-benchmark.
        REGSWEEP_SRC=$REGSWEEP_BIN
        REGSWEEP_BIN=$WORKDIR/regsweep
        cp -p "$REGSWEEP_SRC" "$REGSWEEP_BIN"
    fi
fi

# synth: via cargo bench; if the crate does not build (src/ under construction), build
# benches/synth.rs alone in a scratch package with the same locked dependencies.
SYNTH_BIN=
build_synth() {
    local exe
    if exe=$(cd "$ROOT" && cargo bench --locked --bench synth --no-run --message-format=json 2>"$LOGDIR/synth-build.log" |
        grep '"kind":\["bench"\]' | grep '"name":"synth"' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1) && [[ -n $exe && -x $exe ]]; then
        SYNTH_BIN=$exe
        return
    fi
    note "cargo bench --bench synth did not build (see $LOGDIR/synth-build.log); building it standalone"
    local pkg=$WORKDIR/synth-standalone
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

[profile.release]
debug = 1

[workspace]
EOF
    cp "$ROOT/Cargo.lock" "$pkg/Cargo.lock"
    (cd "$pkg" && cargo build --release --offline) >>"$LOGDIR/synth-build.log" 2>&1 ||
        die "cannot build benches/synth.rs (see $LOGDIR/synth-build.log)"
    SYNTH_BIN=$pkg/target/release/synth
}

# ---------------------------------------------------------------- helpers

# tree_dir SIZE -> cached storage root
tree_dir() { echo "$WORKDIR/tree-r$1-s$SEED"; }

ensure_tree() {
    local size=$1 dir
    dir=$(tree_dir "$size")
    if [[ -d $dir/docker/registry/v2/repositories && -s $dir.summary ]]; then
        note "tree $size: cached at $dir"
        return
    fi
    [[ -n $SYNTH_BIN ]] || build_synth
    note "tree $size: generating at $dir"
    rm -rf "$dir" "$dir.tmp" "$dir.summary"
    "$SYNTH_BIN" --out "$dir.tmp" --repos "$size" --seed "$SEED" >"$dir.summary.tmp" ||
        die "synth failed for --repos $size"
    # Two days old, as a registry's content is: regsweep's default --min-age (1h) keeps
    # anything newer, and the benchmark measures the default, age checks included.
    note "tree $size: setting every mtime two days back"
    find "$dir.tmp" -exec touch -h -d "@$(($(date +%s) - 2 * 86400))" {} + ||
        die "cannot set the mtimes of $dir.tmp"
    mv "$dir.tmp" "$dir"
    mv "$dir.summary.tmp" "$dir.summary"
    cat "$dir.summary" >&2
}

summary_get() { sed -n "s/^$2=//p" "$(tree_dir "$1").summary"; }

write_config() { # write_config ROOTDIR FILE
    cat >"$2" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $1
  delete:
    enabled: true
EOF
}

warm() { # read every directory entry and every file of a tree into the page cache
    find "$1" -type f -exec cat {} + >/dev/null
}

# --cold: written data to disk, then every clean page, dentry and inode out of memory.
drop_cache() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# copy_tree SRC DST: DST becomes a copy of SRC with every mode and mtime (directories'
# too: --min-age reads them). Two tar pipes, blobs and the rest side by side: creating
# entries costs the kernel more than reading them, and GNU tar is faster at it than cp -a,
# which also copies extended attributes the storage has none of.
copy_tree() {
    local src=$1 dst=$2 blobs=docker/registry/v2/blobs dir
    mkdir "$dst"
    if [[ -d $src/$blobs ]]; then
        # The parents exist before either pipe starts: the blobs pipe would
        # otherwise create them while the other extracts them, and that race
        # once failed a 600k-file copy ("Cannot mkdir: No such file or
        # directory"). Their times are set from the source below.
        mkdir -p "$dst/${blobs%/*}"
        tar -C "$src" -cf - "./$blobs" | tar -C "$dst" -xpf - &
        tar -C "$src" --exclude="./$blobs" -cf - . | tar -C "$dst" -xpf -
        wait $!
    else
        tar -C "$src" -cf - . | tar -C "$dst" -xpf -
    fi
    # Whichever pipe finished last may have touched the directories both wrote into.
    for dir in . docker docker/registry docker/registry/v2; do
        [[ ! -d $src/$dir ]] || touch -r "$src/$dir" "$dst/$dir"
    done
}

# The block device holding the workdir, as /proc/diskstats names it.
DISK=$(basename "$(df --output=source "$WORKDIR" | tail -n 1)")
disk_stats() { awk -v d="$DISK" '$3 == d { print }' /proc/diskstats 2>/dev/null; }
# For a loop device, the disk under its backing file: a copy's writeback goes on there
# after the loop device itself is quiet, and costs the CPU a timed run needs.
BACKING_FILE= BACKING_DISK=
if [[ -r /sys/block/$DISK/loop/backing_file ]]; then
    BACKING_FILE=$(cat "/sys/block/$DISK/loop/backing_file")
    BACKING_DISK=$(basename "$(df --output=source "$BACKING_FILE" 2>/dev/null | tail -n 1)")
fi

# The work directory's filesystem, device, mount options and (ext4) whether it has a
# journal: what a sweep's time depends on most.
filesystem_line() {
    local source fstype options journal=""
    read -r source fstype options < <(findmnt -no SOURCE,FSTYPE,OPTIONS -T "$WORKDIR")
    if [[ $fstype == ext4 && -d /proc/fs/ext4/$DISK ]]; then
        # jbd2 lists a journal per journaled device.
        if compgen -G "/proc/fs/jbd2/$DISK-*" >/dev/null; then
            journal="; with a journal"
        else
            journal="; without a journal"
        fi
    fi
    local loop=""
    if [[ -n $BACKING_FILE ]]; then
        loop="; a loop device on $BACKING_FILE (on $BACKING_DISK), direct I/O $([[ $(cat "/sys/block/$DISK/loop/dio" 2>/dev/null) == 1 ]] && echo on || echo off)"
    fi
    echo "$fstype on $source ($WORKDIR), mounted $options$journal$loop"
}

# Discard requests completed on that disk so far (0 where the kernel does not count them).
discards() { disk_stats | awk '{ print ($15 == "" ? 0 : $15) }'; }

# Waits (60 s at most) until the disk (and, under a loop device, the disk holding its
# backing file) has nothing in flight and its counters stood still for a second: the
# copy's writeback must not land in the next timed run.
settle() {
    local i prev="" cur
    [[ -n $(disk_stats) ]] || return 0
    for ((i = 0; i < 60; i++)); do
        cur=$(awk -v d="$DISK" -v b="$BACKING_DISK" '$3 == d || $3 == b { print $4, $8, $12, $15 }' /proc/diskstats)
        if [[ $cur == "$prev" && -z $(awk '$3 != 0' <<<"$cur") ]]; then return 0; fi
        prev=$cur
        sleep 1
    done
    NOTES+=("the disk did not settle within 60 s after a copy")
}

# removal_lists TREE SWEPT PREFIX: what a sweep removed, as PREFIX.files (every file),
# PREFIX.leaves (the directories that held them) and PREFIX.dirs (the other directories,
# deepest first), paths relative to the storage root.
removal_lists() {
    local tree=$1 swept=$2 out=$3
    comm -23 <(cd "$tree" && find . -type f | LC_ALL=C sort) <(cd "$swept" && find . -type f | LC_ALL=C sort) >"$out.files"
    comm -23 <(cd "$tree" && find . -type d | LC_ALL=C sort) <(cd "$swept" && find . -type d | LC_ALL=C sort) >"$out.alldirs"
    sed 's|/[^/]*$||' "$out.files" | LC_ALL=C sort -u | LC_ALL=C comm -12 - "$out.alldirs" >"$out.leaves"
    LC_ALL=C comm -23 "$out.alldirs" "$out.leaves" | LC_ALL=C sort -r >"$out.dirs"
}

# The sweep floor, run in a copy: the files, by 16 rm processes at a time, then their
# directories by 16 rmdir processes, then the directories above them, children first.
RM_FLOOR='cd "$1" && tr "\n" "\0" <"$2.files" | xargs -0 -r -P 16 -n 2000 rm -f -- &&
    tr "\n" "\0" <"$2.leaves" | xargs -0 -r -P 16 -n 2000 rmdir -- &&
    tr "\n" "\0" <"$2.dirs" | xargs -0 -r -n 2000 rmdir --'

# sweep_check ROW SIZE WANT COPY DISCARDS_BEFORE: the files left in the swept COPY, and
# the discards issued since the disk's count was DISCARDS_BEFORE.
sweep_check() {
    local row=$1 size=$2 want=$3 copy=$4 before=$5 left issued
    left=$(find "$copy" -type f | wc -l)
    issued=$(($(discards) - before))
    CHECK[$row|$size]="files left after the last sweep: $left of ${FILES[$size]} (synth expects $want): $([[ $left == "$want" ]] && echo "as expected" || echo MISMATCH); discard requests during the last run: $issued"
}

# Results, keyed "row|size": median seconds, median CPU seconds, peak RSS KiB, status
# text; the runs' seconds and CPU seconds.
declare -A MED CPU RSS STATUS TIMES CPUS
ROWS=(rs_dry rs_dry_m up_dry up_dry_m find_par find_one rs_sweep up_sweep rm_floor)
declare -A LABEL=(
    [rs_dry]='`regsweep gc --dry-run`'
    [rs_dry_m]='`regsweep gc --dry-run -m`'
    [up_dry]='`docker-registry garbage-collect --dry-run`'
    [up_dry_m]='`docker-registry garbage-collect --dry-run -m`'
    [find_par]='floor: `find blobs` ∥ `find repositories` (`-type f`)'
    [find_one]='`find . -type f` (one process)'
    [rs_sweep]='sweep: `regsweep gc -m -y` (fresh copy)'
    [up_sweep]='sweep: `docker-registry garbage-collect -m` (fresh copy)'
    [rm_floor]='sweep floor: what regsweep removes, by `xargs -P 16 rm`, then `rmdir` (fresh copy)'
)
# Which upstream row a row is compared with ("same mode").
declare -A VS_UP=([rs_dry]=up_dry [rs_dry_m]=up_dry_m [up_dry]=up_dry [up_dry_m]=up_dry_m
    [rs_sweep]=up_sweep [up_sweep]=up_sweep)
# Which floor a row is compared with: listing the tree, or removing what regsweep removes.
declare -A FLOOR_OF=([rs_sweep]=rm_floor [up_sweep]=rm_floor [rm_floor]=rm_floor)

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# measure ROW SIZE RUNS OKCODES PREP SAVE -- CMD...
#   OKCODES: space-separated exit codes that count as success; PREP: a function run
#   before every run (outside the timing) or "-"; SAVE: file for the stdout of an untimed
#   warm-up run, or "-" for no warm-up run (sweeps: every run needs a fresh copy).
# Calls for the same row and size add up: the sweeps are measured one run at a time,
# taking turns, so that a slow spell of the disk falls on every tool alike.
measure() {
    local row=$1 size=$2 runs=$3 okcodes=$4 prep=$5 save=$6
    shift 7
    local key="$row|$size" errf="$LOGDIR/$row-$size.stderr" rssf="$LOGDIR/$row-$size.rss"
    [[ ${STATUS[$key]:-} != failed* ]] || return 0
    local -a times=() cpus=()
    read -r -a times <<<"${TIMES[$key]:-}"
    read -r -a cpus <<<"${CPUS[$key]:-}"
    local peak=${RSS[$key]:-0} i t0 t1 rc rss cpu
    ((${#times[@]})) || : >"$errf"
    note "size $size: ${LABEL[$row]} ($runs runs)"
    if [[ $save != - ]]; then
        rc=0
        "$@" >"$save" 2>>"$errf" || rc=$?
        if [[ " $okcodes " != *" $rc "* ]]; then
            STATUS[$key]="failed (exit $rc)"
            NOTES+=("size $size: ${LABEL[$row]} skipped, warm-up exited $rc: $(tail -n 2 "$errf" | tr '\n' ' ' | cut -c1-300)")
            note "  failed (exit $rc), skipped; stderr in $errf"
            return 0
        fi
        if ((rc != 0)); then NOTES+=("size $size: ${LABEL[$row]} exited $rc (accepted)"); fi
    fi
    for ((i = 1; i <= runs; i++)); do
        [[ $prep == - ]] || "$prep"
        ((COLD == 0)) || drop_cache
        rc=0
        t0=$(date +%s.%N)
        "$TIME_BIN" -f '%M %U %S' -o "$rssf" "$@" >/dev/null 2>>"$errf" || rc=$?
        t1=$(date +%s.%N)
        if [[ " $okcodes " != *" $rc "* ]]; then
            STATUS[$key]="failed (exit $rc)"
            NOTES+=("size $size: ${LABEL[$row]} skipped, run $i exited $rc: $(tail -n 2 "$errf" | tr '\n' ' ' | cut -c1-300)")
            note "  run $i failed (exit $rc), skipped; stderr in $errf"
            return 0
        fi
        read -r rss cpu < <(tail -n 1 "$rssf" | awk '{ printf "%s %.2f\n", $1, $2 + $3 }')
        [[ $rss =~ ^[0-9]+$ ]] || rss=0
        if ((rss > peak)); then peak=$rss; fi
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')")
        cpus+=("$cpu")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$row" "${#times[@]}" "${times[-1]}" "$rss" "$cpu" >>"$RAW"
        note "  run ${#times[@]}: ${times[-1]} s, $cpu s CPU, ${rss} KiB"
    done
    TIMES[$key]="${times[*]}"
    CPUS[$key]="${cpus[*]}"
    MED[$key]=$(printf '%s\n' "${times[@]}" | median)
    CPU[$key]=$(printf '%s\n' "${cpus[@]}" | median)
    RSS[$key]=$peak
    STATUS[$key]=ok
}

# Upstream's verdicts and regsweep's JSON report (saved from the warm-up runs) against
# what synth says it wrote.
output_checks() {
    local size=$1 m got gotm want wantm verdict
    for m in up_dry up_dry_m; do
        [[ ${STATUS[$m|$size]:-} == ok ]] || continue
        got=$(grep -c '^blob eligible for deletion' "$LOGDIR/$m-$size.out" || true)
        gotm=$(grep -c 'manifest eligible for deletion' "$LOGDIR/$m-$size.out" || true)
        if [[ $m == up_dry ]]; then
            want=$(summary_get "$size" expect_dry_blobs_eligible); wantm=0
        else
            want=$(summary_get "$size" expect_up28_m_blobs_eligible)
            wantm=$(summary_get "$size" expect_up28_m_manifests_eligible)
        fi
        verdict=$([[ $got == "$want" && $gotm == "$wantm" ]] && echo "as expected" || echo "MISMATCH")
        CHECK[$m|$size]="$got blobs, $gotm manifests eligible (synth expects $want, $wantm): $verdict"
    done
    # regsweep's JSON report against the same expectations (correct, recursive -m).
    if command -v jq >/dev/null; then
        for m in rs_dry rs_dry_m; do
            [[ ${STATUS[$m|$size]:-} == ok ]] || continue
            got=$(jq -r '.reclaimable | "\(.blobs) blobs, \(.manifests) manifests, \(.layer_links) layer links, \(.tag_index_entries) tag index entries"' \
                "$LOGDIR/$m-$size.out" 2>/dev/null) || got="unreadable JSON report"
            if [[ $m == rs_dry ]]; then
                want="$(summary_get "$size" expect_dry_blobs_eligible) blobs, 0 manifests, $(summary_get "$size" expect_dry_layer_links_eligible) layer links, 0 tag index entries"
            else
                want="$(summary_get "$size" expect_m_blobs_eligible) blobs, $(summary_get "$size" expect_m_manifests_eligible) manifests, $(summary_get "$size" expect_m_layer_links_eligible) layer links, $(summary_get "$size" expect_m_tag_index_entries_eligible) tag index entries"
            fi
            verdict=$([[ $got == "$want" ]] && echo "as expected" || echo "MISMATCH, synth expects $want")
            CHECK[$m|$size]="reclaimable: $got: $verdict"
        done
    fi
}

shape_of() {
    local size=$1
    FILES[$size]=$(summary_get "$size" files)
    SHAPE[$size]="$(summary_get "$size" repos) repos ($(summary_get "$size" repos_multiarch) multi-arch, $(summary_get "$size" repos_nested) nested), $(summary_get "$size" manifests) manifests, $(summary_get "$size" blobs) blobs, ${FILES[$size]} files"
}

# ---------------------------------------------------------------- report

write_report() {
    report >"$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "—" }'; }

# What the CPU time of regsweep's sweep allows at best on this machine's CPUs, against
# upstream's median sweep: the work is the kernel's (unlink and rmdir), so no amount of
# parallelism takes the sweep below its CPU time divided by the CPUs.
sweep_bounds() {
    local size cpus any=0 c u
    cpus=$(nproc)
    for size in "${SIZE_LIST[@]}"; do
        [[ ${STATUS[rs_sweep|$size]:-} == ok && -n ${CPU[rs_sweep|$size]:-} ]] || continue
        ((any)) || { echo "Sweep CPU bound:"; echo; any=1; }
        c=${CPU[rs_sweep|$size]}
        local line="- size $size: regsweep's sweep used $c s of CPU (user + system, median) in $(printf '%.3f' "${MED[rs_sweep|$size]}") s; on $cpus CPUs it cannot take less than $(awk -v c="$c" -v n="$cpus" 'BEGIN { printf "%.2f", c / n }') s"
        if [[ ${STATUS[up_sweep|$size]:-} == ok ]]; then
            u=${MED[up_sweep|$size]}
            line+=", at best $(awk -v u="$u" -v c="$c" -v n="$cpus" 'BEGIN { printf "%.2f", u / (c / n) }') times faster than upstream's $(printf '%.3f' "$u") s (measured: $(awk -v u="$u" -v r="${MED[rs_sweep|$size]}" 'BEGIN { printf "%.2f", u / r }') times; upstream used ${CPU[up_sweep|$size]:-?} s of CPU)"
        fi
        echo "$line"
    done
    ((any == 0)) || echo
}

report() {
    local size row key up
    echo "# regsweep vs upstream garbage-collect"
    echo
    echo "Generated by \`benches/compare.sh --sizes $SIZES${SWEEP_SIZES:+ --sweep-sizes $SWEEP_SIZES} --runs $RUNS --sweep-runs $SWEEP_RUNS --seed $SEED$( ((COLD)) && echo ' --cold')$( ((DO_SWEEP)) || echo ' --no-sweep')\`" \
        "on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "- machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "- filesystem: $(filesystem_line)"
    echo "- load average at start / end: $LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- upstream: $("$REGISTRY_BIN" --version 2>&1 | head -n 1)"
    if ((REGSWEEP_OK)); then
        # Only changes to what the binary is built from make it differ from HEAD.
        local changes="as committed"
        [[ -z $(cd "$ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] || changes="plus uncommitted changes to src/ or Cargo.*"
        echo "- regsweep: ${REGSWEEP_SRC:-$REGSWEEP_BIN} (HEAD $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo 'none') $changes, built $(date -u -r "$REGSWEEP_BIN" '+%Y-%m-%d %H:%M UTC'))"
    fi
    if ((COLD)); then
        echo "- **cold** page cache: \`sync; echo 3 >/proc/sys/vm/drop_caches\` before every timed run; times are medians of $RUNS runs ($SWEEP_RUNS for sweeps, each on a fresh copy, copied, synced and settled, then the cache dropped, outside the timing); stdout to /dev/null"
    else
        echo "- warm page cache; times are medians of $RUNS runs ($SWEEP_RUNS for sweeps, each on a fresh copy, copied, synced and warmed outside the timing); stdout to /dev/null"
    fi
    echo "- sweeps take turns: a fresh copy, regsweep; a fresh copy, upstream; a fresh copy, the sweep floor; and again; each copy is left to settle (nothing in flight on the disk, its counters still for a second) before the timed run$( ((COLD)) && echo '; cold, the read-only commands take turns run by run too')"
    echo "- vs floor: a read-only row against the parallel \`find\`; a sweep against the sweep floor, which removes the very files and directories regsweep's first sweep removed, with plain \`rm\` and \`rmdir\`, 16 at a time"
    echo "- CPU s: user + system time of the command and its children (GNU time %U + %S), median of the runs"
    echo "- peak RSS: GNU time %M, highest of the runs; bytes/file = peak RSS / files in the tree"
    echo
    echo "Trees (benches/synth.rs, seed $SEED):"
    echo
    for size in "${SIZE_LIST[@]}"; do
        echo "- **$size**: ${SHAPE[$size]:-not generated yet}"
    done
    echo
    # Header: one group of columns per size.
    local h="| command |" s="|---|"
    for size in "${SIZE_LIST[@]}"; do
        h+=" $size: median s | CPU s | vs upstream | vs floor | peak RSS MiB | RSS B/file |"
        s+="---:|---:|---:|---:|---:|---:|"
    done
    echo "$h"
    echo "$s"
    for row in "${ROWS[@]}"; do
        local line="| ${LABEL[$row]} |" any=0
        for size in "${SIZE_LIST[@]}"; do
            key="$row|$size"
            if [[ ${STATUS[$key]:-} == ok ]]; then
                any=1
                local med=${MED[$key]} rss=${RSS[$key]}
                up=${VS_UP[$row]:-}
                local vsup="—" vsfind="—"
                if [[ -n $up && ${STATUS[$up|$size]:-} == ok ]]; then vsup=$(ratio "$med" "${MED[$up|$size]}"); fi
                local floor=${FLOOR_OF[$row]:-find_par}
                if [[ ${STATUS[$floor|$size]:-} == ok ]]; then vsfind=$(ratio "$med" "${MED[$floor|$size]}"); fi
                line+=" $(printf '%.3f' "$med") | ${CPU[$key]:-—} | $vsup | $vsfind | $(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }') | $(awk -v k="$rss" -v f="${FILES[$size]}" 'BEGIN { printf "%.0f", k * 1024 / f }') |"
            elif [[ -n ${STATUS[$key]:-} ]]; then
                any=1
                line+=" ${STATUS[$key]} | | | | | |"
            else
                line+=" not run | | | | | |"
            fi
        done
        if ((any)); then echo "$line"; fi
    done
    echo
    sweep_bounds
    if ((${#CHECK[@]})); then
        echo "Checks:"
        echo
        for size in "${SIZE_LIST[@]}"; do
            for row in "${ROWS[@]}"; do
                if [[ -n ${CHECK[$row|$size]:-} ]]; then echo "- size $size, ${LABEL[$row]}: ${CHECK[$row|$size]}"; fi
            done
        done
        echo
    fi
    if ((${#NOTES[@]})); then
        echo "Notes:"
        echo
        for n in "${NOTES[@]}"; do echo "- $n"; done
        echo
    fi
    local raw_shown=$RAW
    [[ $RAW == "$ROOT"/* ]] && raw_shown=${RAW#"$ROOT"/}
    echo "Raw runs: \`$raw_shown\`; logs and saved outputs: \`$LOGDIR\`."
}

# ---------------------------------------------------------------- run

declare -A FILES SHAPE CHECK

if ((REPORT_ONLY)); then
    [[ -s $RAW ]] || die "--report-only: no raw runs in $RAW"
    REGSWEEP_OK=0
    [[ -x $WORKDIR/regsweep ]] && REGSWEEP_BIN=$WORKDIR/regsweep
    for size in "${SIZE_LIST[@]}"; do
        [[ -s $(tree_dir "$size").summary ]] || die "--report-only: no tree summary for size $size in $WORKDIR"
        shape_of "$size"
        for row in "${ROWS[@]}"; do
            times=$(awk -F'\t' -v s="$size" -v r="$row" '$1 == s && $2 == r { print $4 }' "$RAW")
            [[ -n $times ]] || continue
            MED[$row|$size]=$(median <<<"$times")
            # Raw runs of older reports have no CPU column.
            cpu_times=$(awk -F'\t' -v s="$size" -v r="$row" '$1 == s && $2 == r && $6 != "" { print $6 }' "$RAW")
            if [[ -n $cpu_times ]]; then CPU[$row|$size]=$(median <<<"$cpu_times"); fi
            RSS[$row|$size]=$(awk -F'\t' -v s="$size" -v r="$row" '$1 == s && $2 == r && $5 > m { m = $5 } END { print m + 0 }' "$RAW")
            STATUS[$row|$size]=ok
            if [[ $row == rs_* ]]; then REGSWEEP_OK=1; fi
        done
        output_checks "$size"
    done
    NOTES+=("report rebuilt with --report-only from $RAW; checks of the sweeps and notes of the original run are not kept")
fi

((REPORT_ONLY)) || printf 'size\trow\trun\tseconds\tmaxrss_kib\tcpu_s\n' >"$RAW"
((REPORT_ONLY)) && SIZE_LOOP=() || SIZE_LOOP=("${SIZE_LIST[@]}")

for size in "${SIZE_LOOP[@]}"; do
    ensure_tree "$size"
    tree=$(tree_dir "$size")
    v2=$tree/docker/registry/v2
    cfg=$WORKDIR/config-r$size.yml
    write_config "$tree" "$cfg"
    shape_of "$size"
    if ((COLD == 0)); then
        note "size $size: warming the page cache"
        warm "$tree"
    fi

    if ((REGSWEEP_OK)); then
        # The timed runs print the default summary, as an operator's run does; the
        # checks read the JSON report of one more, untimed run.
        "$REGSWEEP_BIN" gc --dry-run --json "$tree" >"$LOGDIR/rs_dry-$size.out" 2>/dev/null || true
        "$REGSWEEP_BIN" gc --dry-run --json -m "$tree" >"$LOGDIR/rs_dry_m-$size.out" 2>/dev/null || true
    fi
    # Warm, each command's runs follow one another. Cold, the commands take turns run by
    # run, as the sweeps do: what the disk (and, on a virtual machine, the host's cache
    # under it) does over time then falls on every command alike.
    if ((COLD)); then turns=$RUNS per_call=1; else turns=1 per_call=$RUNS; fi
    for ((turn = 1; turn <= turns; turn++)); do
        # The untimed first run whose output the checks read: once.
        up_save=$LOGDIR/up_dry-$size.out up_m_save=$LOGDIR/up_dry_m-$size.out find_save=/dev/null
        ((turn == 1)) || up_save=- up_m_save=- find_save=-
        if ((REGSWEEP_OK)); then
            measure rs_dry "$size" "$per_call" "0 1" - - -- \
                "$REGSWEEP_BIN" gc --dry-run "$tree"
            measure rs_dry_m "$size" "$per_call" "0 1" - - -- \
                "$REGSWEEP_BIN" gc --dry-run -m "$tree"
        fi
        measure up_dry "$size" "$per_call" 0 - "$up_save" -- \
            "$REGISTRY_BIN" garbage-collect --dry-run "$cfg"
        measure up_dry_m "$size" "$per_call" 0 - "$up_m_save" -- \
            "$REGISTRY_BIN" garbage-collect --dry-run -m "$cfg"
        measure find_par "$size" "$per_call" 0 - "$find_save" -- \
            bash -c 'cd "$1" && { find blobs -type f >/dev/null & a=$!; find repositories -type f >/dev/null & b=$!; wait $a && wait $b; }' _ "$v2"
        measure find_one "$size" "$per_call" 0 - "$find_save" -- \
            bash -c 'cd "$1" && find . -type f' _ "$v2"
    done

    output_checks "$size"

    if ((DO_SWEEP)) && [[ -z $SWEEP_SIZES || ",$SWEEP_SIZES," == *",$size,"* ]]; then
        copy=$WORKDIR/copy-r$size
        copy_cfg=$WORKDIR/config-copy-r$size.yml
        removed=$LOGDIR/removed-r$size
        rm -f "$removed".*
        write_config "$copy" "$copy_cfg"
        fresh_copy() {
            rm -rf "$copy"
            copy_tree "$tree" "$copy"
            sync
            ((COLD)) || warm "$copy"
            settle
            DISCARDS_BEFORE=$(discards)
        }
        rs_want=$((FILES[$size] - $(summary_get "$size" expect_m_blobs_eligible) - $(summary_get "$size" expect_m_manifests_eligible) -
            $(summary_get "$size" expect_m_tag_index_entries_eligible) - $(summary_get "$size" expect_m_layer_links_eligible)))
        # 2.8 removes blobs, revision links and tag index entries, never _layers links.
        up_want=$((FILES[$size] - $(summary_get "$size" expect_up28_m_blobs_eligible) - $(summary_get "$size" expect_up28_m_manifests_eligible) -
            $(summary_get "$size" expect_m_tag_index_entries_eligible)))
        # One run of each in turn, SWEEP_RUNS times.
        for ((run = 1; run <= SWEEP_RUNS; run++)); do
            if ((REGSWEEP_OK)); then
                measure rs_sweep "$size" 1 "0 1" fresh_copy - -- \
                    "$REGSWEEP_BIN" gc -m -y -q "$copy"
                if [[ ${STATUS[rs_sweep|$size]:-} == ok ]]; then
                    sweep_check rs_sweep "$size" "$rs_want" "$copy" "$DISCARDS_BEFORE"
                    # The floor removes exactly what this sweep removed.
                    [[ -s $removed.files ]] || removal_lists "$tree" "$copy" "$removed"
                fi
            fi
            measure up_sweep "$size" 1 0 fresh_copy - -- \
                "$REGISTRY_BIN" garbage-collect -m "$copy_cfg"
            [[ ${STATUS[up_sweep|$size]:-} != ok ]] || sweep_check up_sweep "$size" "$up_want" "$copy" "$DISCARDS_BEFORE"
            if [[ -s $removed.files ]]; then
                measure rm_floor "$size" 1 0 fresh_copy - -- \
                    bash -c "$RM_FLOOR" _ "$copy" "$removed"
                [[ ${STATUS[rm_floor|$size]:-} != ok ]] || sweep_check rm_floor "$size" "$rs_want" "$copy" "$DISCARDS_BEFORE"
            fi
        done
        rm -rf "$copy"
    fi
    write_report
done

write_report
cat "$OUT"
note "report written to $OUT"
