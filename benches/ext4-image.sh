#!/usr/bin/env bash
# A journaled ext4 filesystem in a loop-mounted image file, for benchmarking on
# the filesystem a default Linux install gives (ext4, ordered journal, no
# `discard` mount option) when the machine's own disk is set up otherwise.
#
#   benches/ext4-image.sh IMAGE MOUNTPOINT [SIZE]     create (if absent) and mount
#   benches/ext4-image.sh --umount MOUNTPOINT         unmount (the image stays)
#
# SIZE is what truncate(1) takes [48G]; the image is sparse and grows as it
# fills. mkfs.ext4 runs with its defaults but for the inode count (-N
# 8000000): compare.sh keeps a tree and a fresh copy of it side by side, about
# 2.4M inodes at 4,000 repositories, more than the default ratio gives.
# The loop device does direct I/O on the image: otherwise every block is
# cached twice, by the loop device and as a page of the image file, and at
# 1.2M files a tree and its fresh copy no longer fit in memory (24 GiB here),
# so a "warm" sweep read from the disk.
# Needs root (mount -o loop, losetup). Then, e.g.:
#
#   benches/compare.sh --workdir MOUNTPOINT/bench ...
set -euo pipefail

die() { echo "ext4-image.sh: error: $*" >&2; exit 1; }

if [[ ${1:-} == --umount ]]; then
    [[ -n ${2:-} ]] || die "usage: $0 --umount MOUNTPOINT"
    umount "$2"
    exit 0
fi
[[ $# -ge 2 ]] || die "usage: $0 IMAGE MOUNTPOINT [SIZE] (or --umount MOUNTPOINT)"
image=$1 mountpoint=$2 size=${3:-48G}

if mountpoint -q "$mountpoint"; then
    echo "ext4-image.sh: $mountpoint is already mounted" >&2
else
    if [[ ! -e $image ]]; then
        truncate -s "$size" "$image"
        mkfs.ext4 -q -N 8000000 "$image" || die "mkfs.ext4 failed on $image"
    fi
    mkdir -p "$mountpoint"
    mount -o loop "$image" "$mountpoint" || die "cannot mount $image on $mountpoint (root needed)"
fi
findmnt -n -o SOURCE,TARGET,FSTYPE,OPTIONS "$mountpoint"
device=$(findmnt -n -o SOURCE "$mountpoint")
if [[ $device == /dev/loop* ]]; then
    losetup --direct-io=on "$device" ||
        die "cannot turn on direct I/O for $device (does the filesystem holding $image support O_DIRECT?)"
    losetup -n -O NAME,BACK-FILE,DIO "$device"
fi
