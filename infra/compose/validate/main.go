// Command deploy-validate checks the deployment files the way the real tools read
// them, without Docker or a cluster:
//
//	deploy-validate compose FILE    load FILE with compose-go (the library `docker
//	                                compose` uses): the Compose schema, interpolation,
//	                                merge keys, depends_on targets; print the
//	                                resolved project as JSON
//	deploy-validate kustomize DIR   build DIR with the kustomize API (what
//	                                `kubectl apply -k` runs); print the objects as YAML
//
// It exits 1 with the tool's own error when a file is refused. scripts/
// validate-deploy.sh builds it; tests/unit/test_deploy_*.py run it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: deploy-validate compose FILE | kustomize DIR")
		os.Exit(2)
	}
	var out []byte
	var err error
	switch os.Args[1] {
	case "compose":
		out, err = compose(os.Args[2])
	case "kustomize":
		out, err = kustomize(os.Args[2])
	default:
		err = fmt.Errorf("unknown check %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}

func compose(file string) ([]byte, error) {
	// No environment and no .env file: the file must stand on its own.
	options, err := cli.NewProjectOptions([]string{file}, cli.WithName("agentstream"))
	if err != nil {
		return nil, err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return nil, err
	}
	return project.MarshalJSON()
}

func kustomize(dir string) ([]byte, error) {
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, err
	}
	return resources.AsYaml()
}
