package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// actionDir is the GitHub Action of the readiness gate.
const actionDir = "../../deploy/github-action"

// gateRun is one run of the example workflow's gate step: its exit code, its output, what it
// wrote to the job summary and its step outputs.
type gateRun struct {
	code                     int
	output, summary, stepOut string
}

// runGate runs the gate step (newGate, then run).
func runGate(t *testing.T, ctx context.Context, vars, override map[string]string) gateRun {
	t.Helper()
	return newGate(t, ctx, vars, override).run()
}

// gate is the gate step ready to run, and the files it writes.
type gate struct {
	cmd              *exec.Cmd
	summary, stepOut string
}

// newGate prepares the gate step of deploy/github-action/example-workflow.yml the way a runner would:
// the step's `with:` inputs, with the workflow's expressions replaced by vars (e.g.
// "vars.KEYWATCH_URL"), fill in the action's inputs (action.yml's defaults for the rest), which
// become its step's environment, and its `run:` line runs in bash with GITHUB_ACTION_PATH,
// GITHUB_STEP_SUMMARY and GITHUB_OUTPUT set. An expression the test does not know fails it.
// override replaces inputs the workflow gives (a test waits seconds, not the example's two hours).
func newGate(t *testing.T, ctx context.Context, vars, override map[string]string) *gate {
	t.Helper()
	var workflow struct {
		Jobs map[string]struct {
			Steps []struct {
				ID   string            `yaml:"id"`
				Uses string            `yaml:"uses"`
				With map[string]string `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	readYAML(t, filepath.Join(actionDir, "example-workflow.yml"), &workflow)
	var with map[string]string
	for _, job := range workflow.Jobs {
		for _, s := range job.Steps {
			if strings.Contains(s.Uses, "/deploy/github-action@") {
				with = s.With
			}
		}
	}
	if with == nil {
		t.Fatal("example-workflow.yml has no step that uses deploy/github-action")
	}
	var action struct {
		Inputs map[string]struct {
			Default  string `yaml:"default"`
			Required bool   `yaml:"required"`
		} `yaml:"inputs"`
		Runs struct {
			Using string `yaml:"using"`
			Steps []struct {
				Shell string            `yaml:"shell"`
				Env   map[string]string `yaml:"env"`
				Run   string            `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"runs"`
	}
	readYAML(t, filepath.Join(actionDir, "action.yml"), &action)
	if action.Runs.Using != "composite" || len(action.Runs.Steps) != 1 || action.Runs.Steps[0].Shell != "bash" {
		t.Fatalf("action.yml: want one bash step of a composite action, got %+v", action.Runs)
	}
	inputs := map[string]string{}
	for name, in := range action.Inputs {
		v, given := with[name]
		switch {
		case override[name] != "":
			if !given {
				t.Fatalf("the example workflow does not give input %s, which the test overrides", name)
			}
			inputs["inputs."+name] = override[name]
		case given:
			inputs["inputs."+name] = expand(t, v, vars)
		case in.Required:
			t.Fatalf("the example workflow does not give the required input %s", name)
		default:
			inputs["inputs."+name] = in.Default
		}
	}
	for name := range with {
		if _, ok := action.Inputs[name]; !ok {
			t.Fatalf("the example workflow gives input %s, which action.yml does not declare", name)
		}
	}
	step := action.Runs.Steps[0]
	dir := t.TempDir()
	summary, stepOut := filepath.Join(dir, "summary.md"), filepath.Join(dir, "output")
	abs, err := filepath.Abs(actionDir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", step.Run)
	cmd.Env = append(os.Environ(), "GITHUB_ACTION_PATH="+abs, "GITHUB_STEP_SUMMARY="+summary, "GITHUB_OUTPUT="+stepOut)
	for k, v := range step.Env {
		cmd.Env = append(cmd.Env, k+"="+expand(t, v, inputs))
	}
	return &gate{cmd: cmd, summary: summary, stepOut: stepOut}
}

// run runs the step; it may be called from any goroutine.
func (g *gate) run() gateRun {
	out, err := g.cmd.CombinedOutput()
	r := gateRun{output: string(out)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		r.code, r.output = -1, "run the gate step: "+err.Error()
	}
	s, _ := os.ReadFile(g.summary)
	o, _ := os.ReadFile(g.stepOut)
	r.summary, r.stepOut = string(s), string(o)
	return r
}

var expression = regexp.MustCompile(`\$\{\{\s*([^}\s]+)\s*\}\}`)

// expand replaces each ${{ name }} in s by values[name]; an unknown name fails t.
func expand(t *testing.T, s string, values map[string]string) string {
	t.Helper()
	return expression.ReplaceAllStringFunc(s, func(m string) string {
		name := expression.FindStringSubmatch(m)[1]
		v, ok := values[name]
		if !ok {
			t.Fatalf("the test has no value for ${{ %s }}", name)
		}
		return v
	})
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
