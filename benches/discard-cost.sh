#!/usr/bin/env bash
# What one removal costs on the disk under DIR: N one-block files, created and synced,
# then removed by `xargs rm` with 1, 16 and 64 processes; prints microseconds per file.
# On a filesystem that discards inside unlink (ext4 without a journal, mounted
# `discard`), this is the floor under any sweep, however parallel.
#
#   benches/discard-cost.sh [DIR [N]]        (default: target/bench, 5000)
set -euo pipefail
dir=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/bench}/discard-cost
n=${2:-5000}
for procs in 1 16 64; do
    rm -rf "$dir"
    mkdir -p "$dir"
    for ((i = 0; i < n; i++)); do echo x >"$dir/f$i"; done
    sync
    sleep 2
    start=$(date +%s%N)
    find "$dir" -type f -print0 | xargs -0 -P "$procs" -n 100 rm -f
    end=$(date +%s%N)
    echo "$procs processes: $(((end - start) / 1000 / n)) µs per file ($n files)"
done
rm -rf "$dir"
