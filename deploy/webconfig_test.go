package deploy

import (
	"encoding/base64"
	"path"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// webYML is the part of exporter-toolkit's web configuration the example uses.
type webYML struct {
	TLSServerConfig struct {
		CertFile   string `json:"cert_file"`
		KeyFile    string `json:"key_file"`
		MinVersion string `json:"min_version"`
	} `json:"tls_server_config"`
	BasicAuthUsers map[string]string `json:"basic_auth_users"`
}

// WebConfigExample returns the example's web.yml, as the Secret holds it.
func webConfigExample(t *testing.T) (string, webYML) {
	t.Helper()
	var sec corev1.Secret
	decodeStrict(t, WebConfig, &sec)
	if sec.Name != "sockscope-web-config" || sec.Namespace != "monitoring" {
		t.Errorf("secret %s/%s", sec.Namespace, sec.Name)
	}
	raw, ok := sec.StringData["web.yml"]
	if !ok {
		t.Fatalf("%s: no web.yml in stringData", WebConfig)
	}
	var w webYML
	if err := yaml.UnmarshalStrict([]byte(raw), &w); err != nil {
		t.Fatalf("web.yml: %v", err)
	}
	return raw, w
}

// The example of TLS and basic auth fits together: the patch keeps every argument of the
// DaemonSet and adds --web.config.file, which names the web.yml of the Secret where the patch
// mounts it; the certificate is where the web configuration looks for it; the probes speak
// HTTPS to /-/healthy with a password that the web configuration's hash accepts.
func TestWebConfigExample(t *testing.T) {
	_, w := webConfigExample(t)
	var patch appsv1.DaemonSet
	decodeStrict(t, WebConfigPatch, &patch)
	ds := loadDaemonSet(t)
	if patch.Name != ds.Name || patch.Namespace != ds.Namespace || len(patch.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the patch is not of %s/%s's one container", ds.Namespace, ds.Name)
	}
	c, orig := patch.Spec.Template.Spec.Containers[0], ds.Spec.Template.Spec.Containers[0]
	if c.Name != orig.Name {
		t.Fatalf("the patch's container %q, the DaemonSet's %q", c.Name, orig.Name)
	}
	// A strategic merge patch replaces args whole: every argument must still be there.
	var extra []string
	for _, a := range c.Args {
		if !slices.Contains(orig.Args, a) {
			extra = append(extra, a)
		}
	}
	for _, a := range orig.Args {
		if !slices.Contains(c.Args, a) {
			t.Errorf("the patch drops the argument %s", a)
		}
	}
	if len(extra) != 1 || !strings.HasPrefix(extra[0], "--web.config.file=") {
		t.Fatalf("the patch adds %q, want --web.config.file only", extra)
	}
	file := strings.TrimPrefix(extra[0], "--web.config.file=")
	vols := map[string]corev1.Volume{}
	for _, v := range patch.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	mounted := func(p string) (secret, key string) {
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" {
				t.Errorf("mount %s: a subPath does not follow the Secret's updates", m.MountPath)
			}
			if v := vols[m.Name]; strings.HasPrefix(p, m.MountPath+"/") && v.Secret != nil && m.ReadOnly {
				return v.Secret.SecretName, strings.TrimPrefix(p, m.MountPath+"/")
			}
		}
		return "", ""
	}
	if s, k := mounted(file); s != "sockscope-web-config" || k != "web.yml" {
		t.Errorf("--web.config.file %s is %q of Secret %q, want web.yml of sockscope-web-config", file, k, s)
	}
	for _, f := range []string{w.TLSServerConfig.CertFile, w.TLSServerConfig.KeyFile} {
		if s, k := mounted(f); s != "sockscope-tls" || (k != "tls.crt" && k != "tls.key") {
			t.Errorf("%s is %q of Secret %q, want tls.crt or tls.key of the TLS Secret sockscope-tls", f, k, s)
		}
	}
	if path.Dir(w.TLSServerConfig.CertFile) != path.Dir(w.TLSServerConfig.KeyFile) {
		t.Errorf("certificate and key in different places")
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Path != "/-/healthy" || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %+v: want HTTPS GET /-/healthy on port metrics", name, p)
			continue
		}
		i := slices.IndexFunc(p.HTTPGet.HTTPHeaders, func(h corev1.HTTPHeader) bool { return h.Name == "Authorization" })
		if i < 0 {
			t.Errorf("%s probe: no Authorization header", name)
			continue
		}
		cred, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(p.HTTPGet.HTTPHeaders[i].Value, "Basic "))
		user, pass, ok := strings.Cut(string(cred), ":")
		if err != nil || !ok || bcrypt.CompareHashAndPassword([]byte(w.BasicAuthUsers[user]), []byte(pass)) != nil {
			t.Errorf("%s probe: its credentials %q are not a user and password of web.yml", name, cred)
		}
	}
}
