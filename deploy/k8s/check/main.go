// k8s-check checks Kubernetes manifests against the API's own types, offline: every object must decode strictly
// into the Go type of its kind in k8s.io/api (or KEDA's API for keda.sh kinds), as the API server's decoder would,
// with no unknown or duplicate field and no value of the wrong type; every required field must be there and every
// enum field must hold one of its values (markers_gen.go, read from the types' markers by gen.go).
//
// Usage: k8s-check PATH...   where PATH is a kustomization directory (rendered as kubectl apply -k does) or a YAML
// file. It prints one line per object and one per fault; exit 0 when every object passed, 1 when one did not, 2 when
// a path could not be read or rendered.
//
//	k8s-check -render PATH   prints the objects of PATH as they would be sent, one JSON document a line.
package main

//go:generate go run gen.go

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"

	keda "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/kio"
)

// object is one manifest as the API server would receive it.
type object struct {
	source string // the path it came from
	json   []byte
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-render" {
		objs, err := load(os.Args[2])
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8s-check: %s: %v\n", os.Args[2], err)
			os.Exit(2)
		}
		for _, o := range objs {
			fmt.Println(string(o.json))
		}
		return
	}
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: k8s-check PATH...  (a kustomization directory or a YAML file)\n       k8s-check -render PATH")
		os.Exit(2)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme, autoscalingv2.AddToScheme,
		batchv1.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme, rbacv1.AddToScheme, keda.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, "k8s-check:", err)
			os.Exit(2)
		}
	}
	fmt.Printf("k8s-check: Kubernetes API %s, KEDA %s\n", moduleVersion("k8s.io/api"), moduleVersion("github.com/kedacore/keda/v2"))
	var objects []object
	for _, path := range os.Args[1:] {
		objs, err := load(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8s-check: %s: %v\n", path, err)
			os.Exit(2)
		}
		objects = append(objects, objs...)
	}
	decoder := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Strict: true})
	failed := 0
	for _, o := range objects {
		id, faults := check(decoder, scheme, o.json)
		if len(faults) == 0 {
			fmt.Printf("ok    %s: %s\n", o.source, id)
			continue
		}
		failed++
		for _, f := range faults {
			fmt.Printf("FAIL  %s: %s: %s\n", o.source, id, f)
		}
	}
	fmt.Printf("k8s-check: %d objects, %d failed\n", len(objects), failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// load renders a kustomization directory as kubectl apply -k would, or reads the documents of a YAML file.
func load(path string) ([]object, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var docs [][]byte
	if info.IsDir() {
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		resources, err := k.Run(filesys.MakeFsOnDisk(), path)
		if err != nil {
			return nil, err
		}
		for _, r := range resources.Resources() {
			b, err := r.MarshalJSON()
			if err != nil {
				return nil, err
			}
			docs = append(docs, b)
		}
	} else {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		nodes, err := (&kio.ByteReader{Reader: strings.NewReader(string(data)), OmitReaderAnnotations: true}).Read()
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			b, err := n.MarshalJSON()
			if err != nil {
				return nil, err
			}
			docs = append(docs, b)
		}
	}
	objects := make([]object, len(docs))
	for i, d := range docs {
		objects[i] = object{path, d}
	}
	return objects, nil
}

// check decodes one object strictly into its kind's type, then walks it for required fields and enum values.
func check(decoder runtime.Decoder, scheme *runtime.Scheme, data []byte) (string, []string) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(data, &head)
	id := fmt.Sprintf("%s %s %s", head.APIVersion, head.Kind, head.Metadata.Name)
	if head.Metadata.Namespace != "" {
		id = fmt.Sprintf("%s %s %s/%s", head.APIVersion, head.Kind, head.Metadata.Namespace, head.Metadata.Name)
	}
	obj, gvk, err := decoder.Decode(data, nil, nil)
	var faults []string
	switch {
	case runtime.IsNotRegisteredError(err) || runtime.IsMissingKind(err) || runtime.IsMissingVersion(err):
		return id, []string{"not a kind this checker knows (it knows the core, apps, autoscaling, batch, networking, policy, rbac and keda.sh groups)"}
	case runtime.IsStrictDecodingError(err):
		for _, e := range err.(interface{ Errors() []error }).Errors() {
			faults = append(faults, e.Error())
		}
	case err != nil:
		faults = append(faults, err.Error()) // a value of the wrong type; the walk below still reports the rest
	}
	if head.Metadata.Name == "" {
		faults = append(faults, "metadata.name: required")
	}
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		return id, append(faults, err.Error())
	}
	if obj == nil {
		o, err := scheme.New(*gvk)
		if err != nil {
			return id, append(faults, err.Error())
		}
		obj = o
	}
	w := walker{}
	w.walk(raw, reflect.TypeOf(obj), "")
	return id, append(faults, w.faults...)
}

var unmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

var marked = func() map[string]bool {
	m := map[string]bool{}
	for _, p := range markedPackages {
		m[p] = true
	}
	return m
}()

type walker struct{ faults []string }

func (w *walker) fault(path, f string, a ...any) {
	w.faults = append(w.faults, strings.TrimPrefix(path, ".")+": "+fmt.Sprintf(f, a...))
}

// walk follows the decoded JSON value raw through the Go type t.
func (w *walker) walk(raw any, t reflect.Type, path string) {
	if raw == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() != "" && t.PkgPath() != "" && !marked[t.PkgPath()] && t.Kind() == reflect.Struct &&
		!reflect.PointerTo(t).Implements(unmarshaler) {
		w.fault(path, "type %s.%s is from a package gen.go did not read", t.PkgPath(), t.Name())
		return
	}
	if values, ok := typeEnums[t.PkgPath()+"."+t.Name()]; ok {
		if s, ok := raw.(string); ok && !contains(values, s) {
			w.fault(path, "%q is not one of %s", s, strings.Join(values, ", "))
		}
	}
	if reflect.PointerTo(t).Implements(unmarshaler) {
		return // its own format (quantities, int-or-string, times): the decoder checked it
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return
		}
		w.walkStruct(m, t, path)
	case reflect.Slice:
		if items, ok := raw.([]any); ok {
			for i, item := range items {
				w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	case reflect.Map:
		if m, ok := raw.(map[string]any); ok {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				w.walk(m[k], t.Elem(), path+"."+k)
			}
		}
	}
}

func (w *walker) walkStruct(m map[string]any, t reflect.Type, path string) {
	typeName := t.PkgPath() + "." + t.Name()
	for _, name := range requiredFields[typeName] {
		if v, ok := m[name]; !ok || v == nil {
			w.fault(path+"."+name, "required by %s", t.Name())
		}
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		if f.Anonymous && name == "" {
			w.walkInline(m, f.Type, path)
			continue
		}
		if name == "" {
			name = f.Name
		}
		v, ok := m[name]
		if !ok {
			continue
		}
		if values, ok := fieldEnums[typeName+"."+name]; ok {
			if s, ok := v.(string); ok && !contains(values, s) {
				w.fault(path+"."+name, "%q is not one of %s", s, strings.Join(values, ", "))
			}
		}
		w.walk(v, f.Type, path+"."+name)
	}
}

// walkInline follows an embedded struct's fields in the same JSON object.
func (w *walker) walkInline(m map[string]any, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct {
		w.walkStruct(m, t, path)
	}
}

func contains(values []string, s string) bool {
	for _, v := range values {
		if v == s {
			return true
		}
	}
	return false
}

func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "(unknown version)"
}
