#!/usr/bin/env bash
# Reserves hugepages for DPDK (and mounts hugetlbfs), idempotently: running it twice leaves the
# host as running it once. Without hugepages DPDK still runs with `--no-huge` (slower mbuf
# allocation, no IOVA-contiguous memory: fine for net_af_packet, not for a real NIC's PMD).
#
#   sudo infra/host/hugepages.sh [PAGES] [SIZE_KB]      # default: 1024 pages of 2048 kB (2 GiB)
#   sudo infra/host/hugepages.sh --check                # print the current state only
#
# To keep the reservation across reboots, add `hugepages=PAGES` (and `default_hugepagesz=` for
# 1 GiB pages) to the kernel command line; this script only sets the running kernel.
set -euo pipefail
if [ "${1:-}" = --check ]; then
    grep -H . /sys/kernel/mm/hugepages/hugepages-*/{nr,free}_hugepages 2>/dev/null || echo "no hugepage sizes"
    mount -t hugetlbfs 2>/dev/null || true
    exit 0
fi
pages="${1:-1024}"
size_kb="${2:-2048}"
dir="/sys/kernel/mm/hugepages/hugepages-${size_kb}kB"
if [ ! -d "$dir" ]; then
    echo "this kernel has no ${size_kb} kB hugepages (sizes: $(ls /sys/kernel/mm/hugepages 2>/dev/null | tr '\n' ' '))" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (it writes $dir/nr_hugepages)" >&2
    exit 1
fi
current=$(cat "$dir/nr_hugepages")
if [ "$current" -lt "$pages" ]; then
    echo "$pages" > "$dir/nr_hugepages"
fi
got=$(cat "$dir/nr_hugepages")
if [ "$got" -lt "$pages" ]; then
    echo "asked for $pages pages of ${size_kb} kB, the kernel gave $got (memory is fragmented: reserve at boot instead)" >&2
fi
mnt=/dev/hugepages
if ! mount -t hugetlbfs | grep -q " $mnt "; then
    mkdir -p "$mnt"
    mount -t hugetlbfs -o "pagesize=${size_kb}K" nodev "$mnt"
fi
echo "hugepages ${size_kb} kB: $got reserved, $(cat "$dir/free_hugepages") free; hugetlbfs at $mnt"
