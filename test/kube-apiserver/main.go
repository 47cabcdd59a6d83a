// Command kube-apiserver-test runs a real kube-apiserver (k8s.io/kubernetes/cmd/kube-apiserver)
// over an embedded etcd (go.etcd.io/etcd/server/v3/embed) in one process, for the project's
// integration tests and benchmarks. Every address is loopback; state lives in --data-dir.
//
//	kube-apiserver-test --data-dir DIR --etcd-client-port N --etcd-peer-port M -- <kube-apiserver flags>
//
// The etcd flags are consumed here; everything after "--" goes to kube-apiserver unchanged,
// with --etcd-servers added.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	fs := flag.NewFlagSet("kube-apiserver-test", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "directory for etcd's data (required)")
	clientPort := fs.Int("etcd-client-port", 0, "etcd client port on 127.0.0.1 (required)")
	peerPort := fs.Int("etcd-peer-port", 0, "etcd peer port on 127.0.0.1 (required)")
	_ = fs.Parse(os.Args[1:])
	if *dataDir == "" || *clientPort == 0 || *peerPort == 0 {
		fmt.Fprintln(os.Stderr, "kube-apiserver-test: --data-dir, --etcd-client-port and --etcd-peer-port are required")
		os.Exit(2)
	}

	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = filepath.Join(*dataDir, "etcd")
	cfg.LogLevel = "error"
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", *peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = fmt.Sprintf("test=%s", peerURL.String())
	// A test fixture: losing the last writes on a crash is fine, fsync latency is not.
	cfg.UnsafeNoFsync = true
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-apiserver-test: etcd: %v\n", err)
		os.Exit(1)
	}
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "kube-apiserver-test: etcd not ready after 60 s")
		os.Exit(1)
	}

	command := app.NewAPIServerCommand()
	command.SetArgs(append(fs.Args(), "--etcd-servers="+clientURL.String()))
	code := cli.Run(command)
	etcd.Close()
	os.Exit(code)
}
