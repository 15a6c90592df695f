// Command pause is the sandbox ("pause") container of the real-kubelet Node:
// it holds a pod's namespaces open and exits on SIGINT or SIGTERM. No registry
// can be reached here, so the image is built locally from this file
// (hack/build-node.sh) instead of pulling registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
}
