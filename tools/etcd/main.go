// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 by scripts/tools.sh.
// `go install` of etcd's own main module fails on its replace directives, hence this wrapper.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
