#!/usr/bin/env bash
# How fast regsweep reads a registry's logs (`gc --pull-log`), and whether its memory
# stays flat as the log grows, against `cat | wc -l` and `zcat | wc -l` as the floor.
#
#   benches/pull-logs.sh [--size-mb 1024] [--runs 3] [--repos 200] [--workdir DIR]
#
# Generates (benches/pull_log_synth.rs) a docker-registry 2.8.2 text log of about
# --size-mb MiB, timestamps ascending over 40 days up to now, a mix of manifest HEADs
# and GETs by tag and by digest over the repositories and tags of a synth tree (the
# pulls), blob GETs, /v2/ probes and 404s; a gzip copy of it and a Docker json-file
# wrapped copy; and a synth tree (benches/synth.rs --repos N) so the policy has tags.
# Then times, RUNS runs each (median wall and CPU time, highest peak RSS):
#   - the floors: `cat LOG | wc -l` and `zcat LOG.gz | wc -l`
#   - `regsweep gc --dry-run --keep-last 0 --allow-empty-repos` on the tree without a
#     log (what the storage side costs), and with `--keep-pulled-within 30d --pull-log`
#     on the plain, gzip and json-file copies
#   - the same on a log of half the size (plain and gzip): peak RSS should not follow
#     the lines (only the distinct (repository, reference) pairs, the same in both)
# and reports wall s, CPU s (GNU time %U + %S), peak RSS (%M), MB/s of log text and
# MB per CPU-second (per core). The Markdown report goes to stdout and to
# benches/results/pull-logs.md. The json-file copy is deleted before the half-size
# logs are written: the generated data stays under 2.5 GB at the default size, and
# all of it is removed at the end unless --keep.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: benches/pull-logs.sh [options]

  --size-mb M     size of the plain log, MiB (a second log has M/2)  [1024]
  --runs N        timed runs per command (median)                     [3]
  --repos N       repositories of the synth tree and the log          [200]
  --workdir DIR   logs, tree, binaries and stderr     [target/pull-logs-bench]
  --out FILE      Markdown report           [benches/results/pull-logs.md]
  --keep          keep the generated logs and tree afterwards
  -h, --help      this text

Environment: REGSWEEP_BIN (default target/release/regsweep, built here with
cargo build --release --locked; CARGO_TARGET_DIR is honoured).
EOF
}

die() { echo "pull-logs.sh: error: $*" >&2; exit 1; }
note() { echo "pull-logs.sh: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MB=1024
RUNS=3
REPOS=200
WORKDIR=$ROOT/target/pull-logs-bench
OUT=$ROOT/benches/results/pull-logs.md
KEEP=0
ARGS="$*"

while (($#)); do
    case $1 in
        --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
        --size-mb=*) SIZE_MB=${1#*=}; shift ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --repos) REPOS=${2:?--repos needs a value}; shift 2 ;;
        --repos=*) REPOS=${1#*=}; shift ;;
        --workdir) WORKDIR=${2:?--workdir needs a value}; shift 2 ;;
        --workdir=*) WORKDIR=${1#*=}; shift ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ $SIZE_MB =~ ^[1-9][0-9]*$ && $SIZE_MB -ge 2 ]] || die "--size-mb must be a number of at least 2: $SIZE_MB"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number: $RUNS"
[[ $REPOS =~ ^[1-9][0-9]*$ ]] || die "--repos must be a positive number: $REPOS"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REGSWEEP_BIN=${REGSWEEP_BIN:-$TARGET_DIR/release/regsweep}
TIME_BIN=/usr/bin/time
[[ -x $TIME_BIN ]] || die "$TIME_BIN (GNU time) not found (apt-get install time)"
for tool in cargo rustc gzip zcat wc awk find touch; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

mkdir -p "$WORKDIR" "$(dirname "$OUT")"
WORKDIR=$(cd "$WORKDIR" && pwd)
LOGDIR=$WORKDIR/logs
mkdir -p "$LOGDIR"
RAW=${OUT%.md}.tsv
NOTES=()
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')

# ---------------------------------------------------------------- build

note "building regsweep: cargo build --release --locked"
(cd "$ROOT" && cargo build --release --locked) >"$LOGDIR/build.log" 2>&1 ||
    die "cargo build --release --locked failed (see $LOGDIR/build.log)"
[[ -x $REGSWEEP_BIN ]] || die "$REGSWEEP_BIN not found after the build"
# Snapshot the binary: a concurrent cargo build must not swap it mid-benchmark.
cp -p "$REGSWEEP_BIN" "$WORKDIR/regsweep"
REGSWEEP=$WORKDIR/regsweep

# The log generator needs nothing but std: rustc alone builds it in seconds.
GEN=$WORKDIR/pull-log-synth
rustc -O --edition 2024 -o "$GEN" "$ROOT/benches/pull_log_synth.rs" 2>"$LOGDIR/gen-build.log" ||
    die "cannot build benches/pull_log_synth.rs (see $LOGDIR/gen-build.log)"

SYNTH=$(cd "$ROOT" && cargo bench --locked --bench synth --no-run --message-format=json 2>"$LOGDIR/synth-build.log" |
    grep '"kind":\["bench"\]' | grep '"name":"synth"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1) || true
[[ -n $SYNTH && -x $SYNTH ]] || die "cannot build benches/synth.rs (see $LOGDIR/synth-build.log)"

# ---------------------------------------------------------------- data

TREE=$WORKDIR/tree-r$REPOS
if [[ ! -d $TREE/docker/registry/v2/repositories ]]; then
    note "tree: generating $REPOS repositories at $TREE"
    rm -rf "$TREE" "$TREE.tmp"
    "$SYNTH" --out "$TREE.tmp" --repos "$REPOS" --seed 1 >"$LOGDIR/synth.summary" || die "synth failed"
    # Pushed two days ago: older than --min-age, newer than the logs' start.
    find "$TREE.tmp" -exec touch -h -d "@$(($(date +%s) - 2 * 86400))" {} +
    mv "$TREE.tmp" "$TREE"
fi
TREE_FILES=$(find "$TREE" -type f | wc -l)

# gen NAME MIB [json]: NAME.log (and NAME.log.gz, and NAME-json.log with "json"),
# ending now: the pull window must be covered up to the last hour.
declare -A LINES TEXT_BYTES
gen() {
    local name=$1 mib=$2 json=${3:-} summary
    note "log $name: generating $mib MiB"
    local -a extra=()
    [[ -z $json ]] || extra=(--json-out "$WORKDIR/$name-json.log")
    summary=$("$GEN" --out "$WORKDIR/$name.log" --size-mb "$mib" --repos "$REPOS" --days 40 "${extra[@]}") ||
        die "the log generator failed"
    LINES[$name]=$(sed -n 's/^lines=//p' <<<"$summary")
    TEXT_BYTES[$name]=$(sed -n 's/^bytes=//p' <<<"$summary")
    note "log $name: gzip"
    gzip -1 -c "$WORKDIR/$name.log" >"$WORKDIR/$name.log.gz"
}

filesize() { stat -c %s "$1"; }

# ---------------------------------------------------------------- measuring

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ROWS=()
declare -A LABEL MED CPU RSS TEXT FILE_MB STATUS PULLS
printf 'row\trun\tseconds\tcpu_s\tmaxrss_kib\n' >"$RAW"

# measure ROW LABEL TEXT_BYTES FILE -- CMD...: an untimed warm-up run (its stdout kept,
# the page cache warmed), then RUNS timed runs.
measure() {
    local row=$1 label=$2 text=$3 file=$4
    shift 5
    local errf=$LOGDIR/$row.stderr rssf=$LOGDIR/$row.time i t0 t1 rc rss cpu peak=0
    local -a times=() cpus=()
    ROWS+=("$row")
    LABEL[$row]=$label
    TEXT[$row]=$text
    FILE_MB[$row]=$([[ $file == - ]] && echo "" || awk -v b="$(filesize "$file")" 'BEGIN { printf "%.0f", b / 1e6 }')
    note "$label ($RUNS runs)"
    : >"$errf"
    rc=0
    "$@" >"$LOGDIR/$row.out" 2>>"$errf" || rc=$?
    if ((rc != 0)); then
        STATUS[$row]="failed (exit $rc)"
        NOTES+=("$label: exited $rc: $(tail -n 2 "$errf" | tr '\n' ' ' | cut -c1-300)")
        note "  failed (exit $rc); stderr in $errf"
        return 0
    fi
    for ((i = 1; i <= RUNS; i++)); do
        t0=$(date +%s.%N)
        rc=0
        "$TIME_BIN" -f '%M %U %S' -o "$rssf" "$@" >/dev/null 2>>"$errf" || rc=$?
        t1=$(date +%s.%N)
        if ((rc != 0)); then
            STATUS[$row]="failed (exit $rc)"
            NOTES+=("$label: run $i exited $rc: $(tail -n 2 "$errf" | tr '\n' ' ' | cut -c1-300)")
            return 0
        fi
        read -r rss cpu < <(tail -n 1 "$rssf" | awk '{ printf "%s %.2f\n", $1, $2 + $3 }')
        if ((rss > peak)); then peak=$rss; fi
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
        cpus+=("$cpu")
        printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$i" "${times[-1]}" "$cpu" "$rss" >>"$RAW"
        note "  run $i: ${times[-1]} s, $cpu s CPU, $rss KiB"
    done
    MED[$row]=$(printf '%s\n' "${times[@]}" | median)
    CPU[$row]=$(printf '%s\n' "${cpus[@]}" | median)
    RSS[$row]=$peak
    STATUS[$row]=ok
    # regsweep's own summary of the logs: what it read.
    PULLS[$row]=$(grep -m 1 '^Pull logs:' "$LOGDIR/$row.out" || true)
}

GC=("$REGSWEEP" gc --dry-run --keep-last 0 --allow-empty-repos)
PULL=(--keep-pulled-within 30d --pull-log)

run_set() { # run_set NAME [json]: the floors and regsweep on NAME's copies
    local name=$1 json=${2:-} text=${TEXT_BYTES[$1]} log=$WORKDIR/$1.log mib
    mib=$(awk -v b="$text" 'BEGIN { printf "%.0f", b / 1e6 }')
    measure "cat_$name" "floor: \`cat $name.log \\| wc -l\` ($mib MB)" "$text" "$log" -- \
        bash -c 'cat "$1" | wc -l' _ "$log"
    measure "zcat_$name" "floor: \`zcat $name.log.gz \\| wc -l\` ($mib MB)" "$text" "$log.gz" -- \
        bash -c 'zcat "$1" | wc -l' _ "$log.gz"
    measure "rs_$name" "regsweep, plain $name.log ($mib MB)" "$text" "$log" -- "${GC[@]}" "${PULL[@]}" "$log" "$TREE"
    measure "rsgz_$name" "regsweep, gzip $name.log.gz ($mib MB)" "$text" "$log.gz" -- "${GC[@]}" "${PULL[@]}" "$log.gz" "$TREE"
    if [[ -n $json ]]; then
        measure "rsjson_$name" "regsweep, Docker json-file $name-json.log ($mib MB of text)" "$text" "$WORKDIR/$name-json.log" -- \
            "${GC[@]}" "${PULL[@]}" "$WORKDIR/$name-json.log" "$TREE"
    fi
}

# ---------------------------------------------------------------- report

write_report() {
    local cpus model mem
    cpus=$(nproc)
    model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    mem=$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
    echo "# Reading pull logs: regsweep gc --pull-log vs the cat | wc -l floor"
    echo
    echo "Generated by \`benches/pull-logs.sh${ARGS:+ $ARGS}\` on $STARTED."
    echo
    echo "- machine: $cpus CPUs ($model), $mem GiB RAM, kernel $(uname -r); other builds were running: the load average says how busy it was"
    echo "- load average at start / end: $LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- regsweep: $REGSWEEP_BIN (HEAD $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null && echo ' as committed' || echo ', with uncommitted changes'))"
    echo "- logs (benches/pull_log_synth.rs): docker-registry 2.8.2 text lines, 40 days up to the run's start, over the $REPOS repositories × 5 tags of the tree: 35% manifest HEAD by tag, 15% GET by tag, 10% GET by digest (4 digests per tag), 32% blob GETs, 5% \`/v2/\`, 3% 404s; gzip copy by \`gzip -1\`; the json-file copy wraps every line as Docker's json-file driver does"
    echo "- tree (benches/synth.rs --repos $REPOS --seed 1): $TREE_FILES files, every mtime two days back"
    echo "- regsweep: \`regsweep gc --dry-run --keep-last 0 --allow-empty-repos --keep-pulled-within 30d --pull-log LOG TREE\`, stdout to /dev/null; the first row is the same run without a log"
    echo "- warm page cache (an untimed run first); wall s and CPU s (GNU time %U + %S, the command's and its children's) are medians of $RUNS runs; peak RSS is GNU time %M, the highest of the runs (for a pipeline: its largest process)"
    echo "- MB/s: MB (10^6 bytes) of registry log text per wall second (for the gzip and json-file copies too: the same lines, whatever the file's size); MB/CPU-s: per second of CPU time, i.e. per core"
    echo
    echo "| command | file MB | wall s | CPU s | peak RSS MiB | MB/s | MB/CPU-s (per core) |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    local row
    for row in "${ROWS[@]}"; do
        if [[ ${STATUS[$row]} == ok ]]; then
            awk -v l="${LABEL[$row]}" -v f="${FILE_MB[$row]}" -v w="${MED[$row]}" -v c="${CPU[$row]}" -v r="${RSS[$row]}" -v t="${TEXT[$row]}" 'BEGIN {
                mbs = t > 0 ? sprintf("%.0f", t / 1e6 / w) : "—"
                mbc = t > 0 ? (c > 0 ? sprintf("%.0f", t / 1e6 / c) : "—") : "—"
                printf "| %s | %s | %.2f | %.2f | %.1f | %s | %s |\n", l, (f == "" ? "—" : f), w, c, r / 1024, mbs, mbc }'
        else
            echo "| ${LABEL[$row]} | | ${STATUS[$row]} | | | | |"
        fi
    done
    echo
    if [[ ${STATUS[rs_big]:-} == ok && ${STATUS[rs_half]:-} == ok && ${STATUS[tree_only]:-} == ok ]]; then
        awk -v b="${RSS[rs_big]}" -v h="${RSS[rs_half]}" -v t="${RSS[tree_only]}" -v lb="${LINES[big]}" -v lh="${LINES[half]}" 'BEGIN {
            printf "Memory: peak RSS %.1f MiB with the %d-line log, %.1f MiB with the %d-line one, %.1f MiB with no log: twice the lines, %+.1f MiB.\n\n", b / 1024, lb, h / 1024, lh, t / 1024, (b - h) / 1024 }'
    fi
    if [[ ${STATUS[rs_big]:-} == ok && ${STATUS[cat_big]:-} == ok && ${STATUS[zcat_big]:-} == ok ]]; then
        awk -v r="${CPU[rs_big]}" -v c="${CPU[cat_big]}" -v z="${CPU[zcat_big]}" 'BEGIN {
            printf "Per core, regsweep reads the plain log at %.2f× the rate of `cat | wc -l` and %.2f× that of `zcat | wc -l`.\n\n", (c > 0 ? c / r : 0), z / r }'
    fi
    echo "What regsweep read (its report's \`Pull logs:\` line):"
    echo
    for row in "${ROWS[@]}"; do
        if [[ -n ${PULLS[$row]:-} ]]; then echo "- ${LABEL[$row]}: ${PULLS[$row]}"; fi
    done
    echo
    for name in big half; do
        if [[ -n ${LINES[$name]:-} ]]; then echo "- $name.log: ${LINES[$name]} lines, ${TEXT_BYTES[$name]} bytes"; fi
    done
    echo
    if ((${#NOTES[@]})); then
        echo "Notes:"
        echo
        for n in "${NOTES[@]}"; do echo "- $n"; done
        echo
    fi
    echo "Raw runs: \`${RAW#"$ROOT"/}\`."
}

# ---------------------------------------------------------------- run

measure tree_only "regsweep, no log (the tree alone)" 0 - -- "${GC[@]}" "$TREE"

gen big "$SIZE_MB" json
run_set big json
# Room for the half-size logs: the json-file copy is the largest file.
rm -f "$WORKDIR/big-json.log"
gen half $((SIZE_MB / 2))
run_set half

write_report >"$OUT"
cat "$OUT"
note "report written to $OUT"
if ((KEEP == 0)); then
    rm -rf "$WORKDIR"/big* "$WORKDIR"/half* "$TREE"
    note "generated logs and tree removed (--keep keeps them)"
fi
