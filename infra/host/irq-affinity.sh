#!/usr/bin/env bash
# Pins a NIC's queue IRQs to chosen CPUs, one IRQ per CPU in turn, idempotently, so interrupt
# work for the validator's queues lands on the cores that poll them (or away from them: give
# the IRQs the housekeeping cores and pin the net tile with `[pipeline] pin_net`).
#
#   sudo infra/host/irq-affinity.sh IFACE CPULIST        # e.g. eth1 2,3 or eth1 2-5
#   infra/host/irq-affinity.sh IFACE --check
#
# irqbalance rewrites affinities: stop it (systemctl stop irqbalance) or ban these IRQs.
set -euo pipefail
iface="${1:?usage: irq-affinity.sh IFACE CPULIST|--check}"
cpus="${2:?usage: irq-affinity.sh IFACE CPULIST|--check}"
irqs=$(awk -v ifc="$iface" -F: 'index($0, ifc) {gsub(/ /, "", $1); print $1}' /proc/interrupts)
if [ -z "$irqs" ]; then
    echo "no IRQs named after $iface in /proc/interrupts (a virtual device has none)"
    exit 0
fi
if [ "$cpus" = --check ]; then
    for irq in $irqs; do echo "IRQ $irq -> CPUs $(cat /proc/irq/$irq/smp_affinity_list)"; done
    exit 0
fi
# Expand a CPU list like 2,4-6 into 2 4 5 6.
expand() {
    local out=() part a b
    IFS=, read -ra parts <<< "$1"
    for part in "${parts[@]}"; do
        if [[ "$part" == *-* ]]; then
            a=${part%-*}; b=${part#*-}
            for ((c = a; c <= b; c++)); do out+=("$c"); done
        else
            out+=("$part")
        fi
    done
    echo "${out[@]}"
}
read -ra list <<< "$(expand "$cpus")"
if [ "${#list[@]}" -eq 0 ]; then
    echo "empty CPU list" >&2
    exit 1
fi
i=0
for irq in $irqs; do
    cpu=${list[$((i % ${#list[@]}))]}
    if [ "$(cat /proc/irq/$irq/smp_affinity_list)" != "$cpu" ]; then
        echo "$cpu" > "/proc/irq/$irq/smp_affinity_list"
    fi
    echo "IRQ $irq -> CPU $cpu"
    i=$((i + 1))
done
