// The sandbox ("pause") process of every pod on the real node: it holds the pod's
// namespaces and waits until the runtime stops it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	// Reap children: the pause process is PID 1 of a shared PID namespace.
	go func() {
		children := make(chan os.Signal, 16)
		signal.Notify(children, syscall.SIGCHLD)
		for range children {
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}()
	<-stop
}
