// Command etcdserver is the etcd server (go.etcd.io/etcd/server/v3, the
// version in this module's go.mod), built from the module proxy so that
// servers.sh can run etcd beside the other peers where no etcd package is
// installed. It takes etcd's own flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
