#!/usr/bin/env bash
# Profile one benchmark server under load with py-spy (pip install py-spy), then print
# the hottest functions. Server on core 0, load generator and py-spy on core 1.
#   bash bench/ws/profile.sh gamews echo      /echo      100 16 64 0.5 5
#   bash bench/ws/profile.sh gamews handshake /echo      50 0.3 4.5
#   PROF_DELAY=4 bash bench/ws/profile.sh gamews bcast /broadcast 1000 8 0.5 100000 0
# (arguments after the path are the load generator's, see loadgen.c)
set -euo pipefail
server=$1; mode=$2; path=$3; shift 3
cd "$(dirname "$0")/../.."
python -c "from bench.ws.run import build_loadgen; build_loadgen()"
out=bench/results/profile-$server-$mode.txt
port=$(python -c "from bench.ws.run import free_port; print(free_port())")
taskset -c 0 python -m "bench.ws.${server}_server" --port "$port" > bench/results/profile-server.out 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q READY bench/results/profile-server.out && break; sleep 0.1; done
taskset -c 1 bench/results/ws-loadgen "$mode" "$port" "$path" "$spid" "$@" &
lg=$!
sleep "${PROF_DELAY:-1}"
taskset -c 1 py-spy record ${PYSPY_FLAGS:-} -p "$spid" -d "${PROF_SECS:-4}" -r 250 -f raw -o "$out" > /dev/null 2>&1
wait $lg
python -m bench.ws.pyspy_top "$out"
