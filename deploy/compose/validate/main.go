// Command compose-validate loads Compose files the way `docker compose config`
// does (the compose-go library that Docker Compose v2 is built on): schema,
// interpolation, merge of anchors and extends, consistency of references
// (depends_on, volumes, networks). deploy/check.sh uses it when the docker
// compose plugin is not installed.
//
// usage: compose-validate FILE...
// Prints the project name and its services; exit status 1 with the reason.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-validate FILE...")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(os.Args[1:], cli.WithOsEnv, cli.WithConsistency(true))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	names := project.ServiceNames()
	sort.Strings(names)
	fmt.Printf("project %s: %s\n", project.Name, strings.Join(names, ", "))
}
