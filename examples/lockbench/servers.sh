#!/usr/bin/env bash
# Starts the servers README "Performance" measures lockbench against, on
# loopback, until Ctrl-C (then stops them and deletes their data):
#
#   redis-server  127.0.0.1:6379   appendonly yes, appendfsync always
#   ZooKeeper     127.0.0.1:2181   one standalone server
#   ZooKeeper     127.0.0.1:2182,127.0.0.1:2183,127.0.0.1:2184   a 3-server ensemble
#   etcd          127.0.0.1:2379   one member
#   etcd          127.0.0.1:2479,127.0.0.1:2579,127.0.0.1:2679   a 3-member cluster
#
# Both ZooKeepers sync their transaction log (forceSync, ZooKeeper's
# default); etcd syncs its WAL (always). Needs the Debian packages
# redis-server and zookeeper, and Java; etcd is built from the module
# proxy (./etcdserver, the etcd server of this module's go.mod). Run it
# from this directory, or anywhere as bash PATH/servers.sh. Then, in
# another shell, in this directory:
#
#   go run . -backends embedded1,embedded3,lockd3,redis,zookeeper,zookeeper3,etcd,etcd3 \
#       -failovers 5 -json out.json -svg out.svg
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
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

go build -C "$here" -o "$dir/etcd" ./etcdserver
# etcd NAME CLIENTPORT PEERPORT CLUSTER TOKEN
etcd() {
	local name=$1 client=$2 peer=$3 cluster=$4 token=$5
	"$dir/etcd" --name "$name" --data-dir "$dir/$name" \
		--listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
		--listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$token" \
		--log-level error >"$dir/$name.log" 2>&1 &
	pids+=($!)
}
etcd etcd1 2379 2380 "etcd1=http://127.0.0.1:2380" lockbench-etcd1
members=()
for i in 1 2 3; do
	members+=("etcd-m$i=http://127.0.0.1:$((2380 + 100 * i))")
done
cluster=$(IFS=,; echo "${members[*]}")
for i in 1 2 3; do
	etcd "etcd-m$i" $((2379 + 100 * i)) $((2380 + 100 * i)) "$cluster" lockbench-etcd3
done

echo "servers up (logs in $dir); Ctrl-C stops them"
wait
