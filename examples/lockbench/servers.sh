#!/usr/bin/env bash
# Starts the servers README "Performance" measures lockbench against, on
# loopback, until Ctrl-C (then stops them and deletes their data):
#
#   redis-server  127.0.0.1:6379   appendonly yes, appendfsync always
#   ZooKeeper     127.0.0.1:2181   one standalone server
#   ZooKeeper     127.0.0.1:2182,127.0.0.1:2183,127.0.0.1:2184   a 3-server ensemble
#
# Both ZooKeepers sync their transaction log (forceSync, ZooKeeper's
# default). Needs the Debian packages redis-server and zookeeper, and Java.
# Then, in another shell:
#
#   go run ./examples/lockbench -backends embedded1,embedded3,redis,zookeeper,zookeeper3 \
#       -failovers 5 -json out.json -svg out.svg
set -euo pipefail

dir=$(mktemp -d -t lockbench-servers.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

jar() { # the Debian jar $1, unversioned or the newest versioned one
	local p=/usr/share/java/$1.jar
	[ -e "$p" ] || p=$(ls /usr/share/java/"$1"-[0-9]*.jar 2>/dev/null | sort | tail -1)
	[ -n "$p" ] || { echo "servers.sh: /usr/share/java/$1.jar not found: install the Debian package zookeeper" >&2; exit 1; }
	echo "$p"
}
cp="$(jar zookeeper):$(jar zookeeper-jute):$(jar slf4j-api):$(jar slf4j-simple)"

mkdir -p "$dir/redis"
redis-server --port 6379 --bind 127.0.0.1 --dir "$dir/redis" --save '' \
	--appendonly yes --appendfsync always >"$dir/redis.log" 2>&1 &
pids+=($!)

# zk NAME CLIENTPORT MAINCLASS [EXTRA zoo.cfg LINES...]
zk() {
	local name=$1 port=$2 main=$3
	shift 3
	mkdir -p "$dir/$name/data"
	{
		echo "tickTime=200"
		echo "dataDir=$dir/$name/data"
		echo "clientPort=$port"
		echo "clientPortAddress=127.0.0.1"
		echo "initLimit=50"
		echo "syncLimit=15"
		echo "maxClientCnxns=0"
		echo "admin.enableServer=false"
		printf '%s\n' "$@"
	} >"$dir/$name/zoo.cfg"
	java -Xmx256m -XX:+UseSerialGC -Djava.io.tmpdir="$dir/$name" \
		-Dzookeeper.admin.enableServer=false -Dzookeeper.extendedTypesEnabled=true \
		-cp "$cp" "$main" "$dir/$name/zoo.cfg" >"$dir/$name.log" 2>&1 &
	pids+=($!)
}

zk zk1 2181 org.apache.zookeeper.server.ZooKeeperServerMain
peers=()
for i in 1 2 3; do
	peers+=("server.$i=127.0.0.1:$((2887 + i)):$((3887 + i))")
done
for i in 1 2 3; do
	mkdir -p "$dir/ens$i/data"
	echo "$i" >"$dir/ens$i/data/myid"
	zk "ens$i" $((2181 + i)) org.apache.zookeeper.server.quorum.QuorumPeerMain \
		"standaloneEnabled=false" "${peers[@]}"
done

echo "servers up (logs in $dir); Ctrl-C stops them"
wait
