package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that overrides a configuration value.
const EnvPrefix = "KEYWATCH_"

// envName is the environment variable that overrides the value at path (kafka.brokers →
// KEYWATCH_KAFKA_BROKERS).
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// Field describes one configuration value for --help and check-config.
type Field struct {
	Path, Env, Help string
	Secret          bool
	// Value is the value in the described configuration; for a secret only whether it is set.
	Value string
}

// Describe lists every value of c with its path and environment variable.
func Describe(c Config) []Field {
	var out []Field
	walk(reflect.ValueOf(&c).Elem(), "", func(path string, v reflect.Value, f reflect.StructField) {
		fl := Field{Path: path, Env: envName(path), Help: f.Tag.Get("help"), Secret: f.Tag.Get("secret") == "true", Value: format(v)}
		if fl.Secret {
			fl.Value = map[bool]string{true: "(set)", false: "(not set)"}[fl.Value != ""]
		}
		out = append(out, fl)
	})
	return out
}

// Changed lists the paths of the values that differ between a and b, in the order of Describe;
// secrets are compared too, and only their paths are named.
func Changed(a, b Config) []string {
	values := map[string]any{}
	walk(reflect.ValueOf(&b).Elem(), "", func(path string, v reflect.Value, _ reflect.StructField) {
		values[path] = v.Interface()
	})
	var out []string
	walk(reflect.ValueOf(&a).Elem(), "", func(path string, v reflect.Value, _ reflect.StructField) {
		if !reflect.DeepEqual(v.Interface(), values[path]) {
			out = append(out, path)
		}
	})
	return out
}

// secretPaths are the paths of the secret values (kafka.sasl.password).
func secretPaths() []string {
	var out []string
	for _, f := range Describe(Default()) {
		if f.Secret {
			out = append(out, f.Path)
		}
	}
	return out
}

func walk(v reflect.Value, prefix string, visit func(path string, v reflect.Value, f reflect.StructField)) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() { // what Load compiles from the values (selector.go)
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fv := v.Field(i)
		if opts == "inline" {
			walk(fv, prefix, visit)
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		if fv.Kind() == reflect.Struct {
			walk(fv, path, visit)
			continue
		}
		visit(path, fv, f)
	}
}

var durationType = reflect.TypeFor[Duration]()

func applyEnv(cfg *Config, env map[string]string) []error {
	var errs []error
	known := map[string]bool{}
	walk(reflect.ValueOf(cfg).Elem(), "", func(path string, v reflect.Value, _ reflect.StructField) {
		name := envName(path)
		known[name] = true
		raw, ok := env[name]
		if !ok {
			return
		}
		if err := set(v, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s (from %s): %q: %v", path, name, raw, err))
		}
	})
	for name := range env {
		if !known[name] && !ignoredEnv[name] {
			errs = append(errs, fmt.Errorf("%s: no such setting (keywatch check-config --help lists them)", name))
		}
	}
	sortErrors(errs)
	return errs
}

// ignoredEnv are KEYWATCH_ variables that are not configuration values.
var ignoredEnv = map[string]bool{
	"KEYWATCH_CONFIG": true, "KEYWATCH_LIBCHDB": true,
	"KEYWATCH_TEST_CLICKHOUSE": true, "KEYWATCH_TEST_CLICKHOUSE_HTTP": true, "KEYWATCH_TEST_KEEP": true,
	"KEYWATCH_TESTBED_CLICKHOUSE": true, "KEYWATCH_CACHE": true,
}

func set(v reflect.Value, raw string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("not a whole number")
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var parts []string
		for p := range strings.SplitSeq(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("this setting is read from the YAML file only")
	}
	return nil
}

func format(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		return strings.Join(v.Interface().([]string), ",")
	case v.Kind() == reflect.Slice || v.Kind() == reflect.Map:
		var n yaml.Node // one line, in YAML flow style
		if err := n.Encode(v.Interface()); err != nil {
			return fmt.Sprint(v.Interface())
		}
		n.Style = yaml.FlowStyle
		b, _ := yaml.Marshal(&n)
		return strings.TrimSpace(string(b))
	default:
		return fmt.Sprint(v.Interface())
	}
}

func sortErrors(errs []error) {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
}

// Duration is a time.Duration written as "90s", "24h" in YAML and the environment.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as UnmarshalYAML reads it.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q: not a duration (write e.g. 500ms, 30s, 24h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}
