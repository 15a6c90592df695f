// Command k8s-bundle is one multi-call binary holding the Kubernetes control
// plane used by the local development cluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kubectl. Shared packages compile
// and link once. It dispatches on the name it was invoked as (symlinks) or,
// failing that, on its first argument.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

var commands = map[string]func(args []string) int{
	"etcd": func(args []string) int {
		etcdmain.Main(append([]string{"etcd"}, args...))
		return 0
	},
	"kube-apiserver": func(args []string) int {
		return runCobra(apiserver.NewAPIServerCommand(), args)
	},
	"kube-controller-manager": func(args []string) int {
		return runCobra(controllermanager.NewControllerManagerCommand(), args)
	},
	"kube-scheduler": func(args []string) int {
		return runCobra(scheduler.NewSchedulerCommand(), args)
	},
	"kubectl": func(args []string) int {
		command := kubectlcmd.NewDefaultKubectlCommand()
		command.SetArgs(args)
		if err := cli.RunNoErrOutput(command); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	},
}

func runCobra(command *cobra.Command, args []string) int {
	command.SetArgs(args)
	return cli.Run(command)
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	run, ok := commands[name]
	if !ok && len(args) > 0 {
		name, args = args[0], args[1:]
		run, ok = commands[name]
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "usage: k8s-bundle {etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubectl} [args...]\n")
		os.Exit(2)
	}
	os.Exit(run(args))
}
