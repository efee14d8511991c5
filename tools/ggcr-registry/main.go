// Command ggcr-registry serves go-containerregistry's pkg/registry with the OCI 1.1 referrers API,
// built by scripts/tools.sh: a second real registry for tests, beside Debian's distribution 2.8,
// which has no referrers API. Blobs are kept under --disk; manifests live in memory only, so a
// restart starts with an empty registry. Plain HTTP unless --tls-cert and --tls-key are given;
// no authentication.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	address := flag.String("address", "127.0.0.1:5000", "host:port to listen on")
	disk := flag.String("disk", "", "directory for blobs (required)")
	tlsCert := flag.String("tls-cert", "", "PEM certificate: serve HTTPS (with --tls-key)")
	tlsKey := flag.String("tls-key", "", "PEM private key of --tls-cert")
	flag.Parse()
	if err := run(*address, *disk, *tlsCert, *tlsKey); err != nil {
		fmt.Fprintln(os.Stderr, "ggcr-registry:", err)
		os.Exit(1)
	}
}

func run(address, disk, tlsCert, tlsKey string) error {
	if disk == "" {
		return errors.New("--disk DIR is required")
	}
	if (tlsCert == "") != (tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	// the disk handler writes its temporary upload files into this directory, so it must exist
	if err := os.MkdirAll(disk, 0o755); err != nil {
		return err
	}
	handler := registry.New(
		registry.WithReferrersSupport(true),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(disk)),
	)
	// listen first so the address is taken (or the error reported) before the log says ready
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return err
	}
	log.Printf("ggcr-registry serving on %s (tls: %t, blobs in %s)", ln.Addr(), tlsCert != "", disk)
	// HTTP/1.1 only: pkg/registry's uploads hang over HTTP/2 (go-containerregistry#1210; oras cp
	// stopped on its first blob PUT here, HTTP/2 being what Go clients negotiate over TLS)
	srv := &http.Server{Handler: handler, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	if tlsCert != "" {
		return srv.ServeTLS(ln, tlsCert, tlsKey)
	}
	return srv.Serve(ln)
}
