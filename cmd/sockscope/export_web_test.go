package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"sigs.k8s.io/yaml"

	"github.com/sockscope/sockscope/deploy"
)

// writeTLSFiles writes a self-signed certificate for 127.0.0.1 and its key into dir.
func writeTLSFiles(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sockscope test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// With a web config file, the exporter serves TLS only and asks for basic auth: a real Prometheus
// with the credentials scrapes it; one without them, or over plain HTTP, is refused.
func TestExportTLSAndBasicAuthRefuseUnauthenticatedScrapes(t *testing.T) {
	requirePrometheus(t)
	dir := t.TempDir()
	certFile, keyFile, pool := writeTLSFiles(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	os.WriteFile(webConfig, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n",
		certFile, keyFile, hash)), 0o600)
	exp := startExport(t, noDocker, "--web.config.file", webConfig)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	get := func(user, pass string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+exp.addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: status %d, want 401", code)
	}
	if code, _ := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: status %d, want 401", code)
	}
	if code, body := get("prometheus", "s3cret"); code != 200 || !strings.Contains(body, "sockscope_build_info") {
		t.Errorf("with credentials: status %d, body %.200q", code, body)
	}
	if resp, err := http.Get("http://" + exp.addr + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(b), "sockscope_") {
			t.Errorf("plain HTTP was served: %d %.200q", resp.StatusCode, b)
		}
	}

	tlsConf := fmt.Sprintf("    scheme: https\n    tls_config:\n      ca_file: %s\n", certFile)
	prom := startPrometheus(t,
		scrapeJob{name: "authed", target: exp.addr, extra: tlsConf + "    basic_auth:\n      username: prometheus\n      password: s3cret\n"},
		scrapeJob{name: "anonymous", target: exp.addr, extra: tlsConf},
		scrapeJob{name: "plain", target: exp.addr})
	prom.waitFor(t, `up`, 30*time.Second, func(s []sample) bool { return len(s) == 3 })
	up := map[string]float64{}
	for _, s := range prom.query(t, `up`, 0) {
		up[s.Metric["job"]] = s.V
	}
	if up["authed"] != 1 || up["anonymous"] != 0 || up["plain"] != 0 {
		t.Errorf("up by job = %v, want authed 1, anonymous 0, plain 0", up)
	}
	if got := prom.query(t, `sockscope_build_info{job="anonymous"}`, 0); len(got) != 0 {
		t.Errorf("an unauthenticated scrape got metrics: %+v", got)
	}
	exp.stop(t)
}

// Bad command lines and configurations: one clear line, a non-zero status, no stack trace.
func TestExportBadInput(t *testing.T) {
	requireTracing(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "web.yml")
	os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n"), 0o600)
	typo := filepath.Join(dir, "typo.yml")
	os.WriteFile(typo, []byte("basic_auth_user:\n  a: b\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--web.config.file", filepath.Join(dir, "missing.yml")}, []string{"--web.config.file", "missing.yml"}},
		{[]string{"--web.config.file", bad}, []string{"--web.config.file", "nonexistent"}},
		{[]string{"--web.config.file", typo}, []string{"--web.config.file", "basic_auth_user"}},
		{[]string{"--web.listen-address", "9890"}, []string{"--web.listen-address", "HOST:PORT"}},
		{[]string{"--web.telemetry-path", "metrics"}, []string{"--web.telemetry-path"}},
		{[]string{"--netns", "blue"}, []string{"--netns", "NAME=PATH"}},
		{[]string{"--netns", "host=/proc/self/ns/net"}, []string{"host"}},
		{[]string{"--syscalls.top", "0"}, []string{"--syscalls.top"}},
		{[]string{"--sockets.reconcile", "-1m"}, []string{"--sockets.reconcile", "-1m0s"}},
		{[]string{"--sockets.reconcile", "often"}, []string{"--sockets.reconcile"}},
		{[]string{"--sockets.walk=maybe"}, []string{"--sockets.walk"}},
		{[]string{"--web.max-requests", "-1"}, []string{"--web.max-requests", "-1"}},
		{[]string{"--web.idle-timeout", "0s"}, []string{"--web.idle-timeout", "positive"}},
		{[]string{"--web.read-timeout", ""}, []string{"--web.read-timeout"}},
		{[]string{"--web.write-timeout", "soon"}, []string{"--web.write-timeout"}},
		{[]string{"extra"}, []string{"unexpected argument"}},
	} {
		r := runSockscope(t, append([]string{"export"}, tc.args...)...)
		assertUsageError(t, r, "sockscope export", tc.want...)
	}
	// Runtime errors: exit status 1, one line.
	r := runSockscope(t, "export", noDocker, "--netns", "blue=/nonexistent/netns")
	assertFailure(t, r, "--netns", "/nonexistent/netns")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r = runSockscope(t, "export", noDocker, "--web.listen-address", l.Addr().String())
	assertFailure(t, r, "listen on "+l.Addr().String(), "address already in use", "--web.listen-address")
}

// The deployment's example of TLS and basic auth (deploy/kubernetes/web-config.yaml and the
// DaemonSet patch beside it) works with the real exporter: the probes' request, with the
// patch's Authorization header, gets ok from /-/healthy over TLS; without it, 401, on /metrics
// too.
func TestExportServesTheDeploymentsWebConfigExample(t *testing.T) {
	requireTracing(t)
	dir := t.TempDir()
	certFile, keyFile, pool := writeTLSFiles(t, dir)
	var secret struct {
		StringData map[string]string `json:"stringData"`
	}
	if err := yaml.Unmarshal(readDeploy(t, deploy.WebConfig), &secret); err != nil {
		t.Fatal(err)
	}
	web := strings.NewReplacer("/etc/sockscope/tls/tls.crt", certFile, "/etc/sockscope/tls/tls.key", keyFile).Replace(secret.StringData["web.yml"])
	if !strings.Contains(web, certFile) || !strings.Contains(web, keyFile) {
		t.Fatalf("the example's web.yml names no certificate at /etc/sockscope/tls:\n%s", secret.StringData["web.yml"])
	}
	webConfig := filepath.Join(dir, "web.yml")
	os.WriteFile(webConfig, []byte(web), 0o600)
	var patch struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						ReadinessProbe struct {
							HTTPGet struct {
								Path        string                         `json:"path"`
								HTTPHeaders []struct{ Name, Value string } `json:"httpHeaders"`
							} `json:"httpGet"`
						} `json:"readinessProbe"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readDeploy(t, deploy.WebConfigPatch), &patch); err != nil {
		t.Fatal(err)
	}
	probe := patch.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet
	exp := startExport(t, noDocker, "--web.config.file", webConfig)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	get := func(p string, headers bool) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+exp.addr+p, nil)
		if headers {
			for _, h := range probe.HTTPHeaders {
				req.Header.Set(h.Name, h.Value)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(probe.Path, true); code != 200 || body != "ok\n" {
		t.Errorf("the probe's request: %d %q, want 200 ok", code, body)
	}
	for _, p := range []string{probe.Path, "/metrics"} {
		if code, _ := get(p, false); code != http.StatusUnauthorized {
			t.Errorf("%s without the header: %d, want 401", p, code)
		}
	}
	if code, body := get("/metrics", true); code != 200 || !strings.Contains(body, "sockscope_build_info") {
		t.Errorf("/metrics with the header: %d", code)
	}
	exp.stop(t)
}

func readDeploy(t *testing.T, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(deploy.Files(), name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
