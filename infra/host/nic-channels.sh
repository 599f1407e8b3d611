#!/usr/bin/env bash
# Sets a NIC's combined (or RX) channel count so the validator's kernel-bypass ingress gets one
# queue per receiving core (`ingress.queues` in node.toml), idempotently.
#
#   sudo infra/host/nic-channels.sh IFACE QUEUES
#   infra/host/nic-channels.sh IFACE --check
#
# AF_XDP binds one socket per queue, and the XDP program only sees what RSS puts on those
# queues: with fewer channels than queues some sockets stay idle; with more, the validator's
# traffic hashed to other queues passes to the kernel's UDP socket instead (still received, but
# slower). Use `ethtool -N` flow steering to pin the validator's UDP port to its queues when the
# NIC supports it.
set -euo pipefail
iface="${1:?usage: nic-channels.sh IFACE QUEUES|--check}"
want="${2:?usage: nic-channels.sh IFACE QUEUES|--check}"
if ! command -v ethtool >/dev/null; then
    echo "ethtool is not installed (apt-get install ethtool)" >&2
    exit 1
fi
if [ ! -e "/sys/class/net/$iface" ]; then
    echo "no interface $iface" >&2
    exit 1
fi
if [ "$want" = --check ]; then
    ethtool -l "$iface" 2>/dev/null || echo "$iface reports no channel settings (a virtual device has none)"
    exit 0
fi
# Current and maximum combined channels; drivers without combined channels use rx.
if ! ethtool -l "$iface" >/dev/null 2>&1; then
    echo "$iface reports no channel settings (a virtual device?): nothing to do"
    exit 0
fi
read -r max_combined max_rx < <(ethtool -l "$iface" | awk '/Pre-set maximums/ {m=1} /Current hardware/ {m=0}
    m && /^Combined:/ {c=$2} m && /^RX:/ {r=$2} END {print (c==""?0:c), (r==""?0:r)}')
read -r cur_combined cur_rx < <(ethtool -l "$iface" | awk '/Current hardware/ {m=1}
    m && /^Combined:/ {c=$2} m && /^RX:/ {r=$2} END {print (c==""?0:c), (r==""?0:r)}')
if [ "${max_combined:-0}" != "0" ] && [ "$max_combined" != "n/a" ]; then
    if [ "$want" -gt "$max_combined" ]; then
        echo "$iface supports at most $max_combined combined channels, asked for $want" >&2
        exit 1
    fi
    [ "$cur_combined" = "$want" ] || ethtool -L "$iface" combined "$want"
elif [ "${max_rx:-0}" != "0" ] && [ "$max_rx" != "n/a" ]; then
    if [ "$want" -gt "$max_rx" ]; then
        echo "$iface supports at most $max_rx RX channels, asked for $want" >&2
        exit 1
    fi
    [ "$cur_rx" = "$want" ] || ethtool -L "$iface" rx "$want"
else
    echo "$iface reports no configurable channels (a virtual device?): nothing to do"
    exit 0
fi
ethtool -l "$iface" | sed -n '/Current hardware/,$p'
