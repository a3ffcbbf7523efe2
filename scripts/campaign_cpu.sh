#!/usr/bin/env bash
# CPU seconds each node of the lab spends on one campaign (BENCHMARKS.md, "Where a campaign's CPU
# goes"): `lab bringup robots:=1` in a folder of its own, 20 s to settle, then one
# `lab campaign run`; prints the campaign's wall time and each node's CPU (user + system) over it.
#   bash scripts/campaign_cpu.sh [budget 16] [batch 8] [speed 1500]
set -eo pipefail
cd "$(dirname "$0")/.."
budget=${1:-16} batch=${2:-8} speed=${3:-1500}
# shellcheck disable=SC1091
source scripts/env.sh  # (colcon's setup.bash reads unset variables: no `set -u` before it)
set -u
work=$(mktemp -d)
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-91}
cd "$work"
lab bringup robots:=1 "speed:=$speed" record:=false > bringup.log 2>&1 &
bringup=$!
trap 'kill -INT $bringup 2>/dev/null; wait $bringup 2>/dev/null; rm -rf "$work"' EXIT
sleep 20
ticks=$(getconf CLK_TCK)
cpu() {  # node name and utime + stime (clock ticks) of every node process of this bring-up
  for pid in $(pgrep -P "$bringup"); do
    name=$(tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n 's/^__node:=//p')
    echo "${name:-?} $(awk '{print $14 + $15}' "/proc/$pid/stat")"
  done | sort
}
cpu > before.txt
start=$(date +%s.%N)
lab campaign run photocatalysis --budget "$budget" --batch "$batch" --seed 1 | grep "done:"
end=$(date +%s.%N)
cpu > after.txt
echo "campaign of $budget (batches of $batch) at ${speed}x: $(echo "$end - $start" | bc | cut -c1-5) s wall"
join before.txt after.txt | awk -v t="$ticks" '{d = ($3 - $2) / t; s += d; printf "  %-20s %6.2f CPU-s\n", $1, d}
                                                 END {printf "  %-20s %6.2f CPU-s\n", "total", s}'
