package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // no answer, or a server failure (5xx)
	exitUsage   = 2
	exitRefused = 3 // the server refused the request (4xx)
)

// cli is one invocation.
type cli struct {
	base    string
	token   string
	client  *http.Client
	json    bool
	timeout time.Duration
	out     io.Writer
}

// apiError is an answer other than 2xx.
type apiError struct {
	code        int
	short, text string
}

func (e *apiError) Error() string {
	if e.short == "" {
		return fmt.Sprintf("HTTP %d", e.code)
	}
	return fmt.Sprintf("%s (HTTP %d): %s", e.short, e.code, e.text)
}

// errUsage is a command line that does not parse.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, rest, err := parse(args, stdout, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			_, _ = fmt.Fprintln(stderr, "lockctl:", err)
		}
		return exitUsage
	}
	err = c.command(ctx, rest)
	var ae *apiError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		_, _ = fmt.Fprintln(stderr, "lockctl:", err)
		return exitUsage
	case errors.As(err, &ae) && ae.code < 500:
		_, _ = fmt.Fprintln(stderr, "lockctl:", err)
		return exitRefused
	default:
		_, _ = fmt.Fprintln(stderr, "lockctl:", err)
		return exitFailed
	}
}

func parse(args []string, stdout, stderr io.Writer) (*cli, []string, error) {
	fs := flag.NewFlagSet("lockctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &cli{out: stdout}
	addr := os.Getenv("LOCKCTL_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:8001"
	}
	fs.StringVar(&c.base, "addr", addr, "a replica's API, http(s)://host:port ($LOCKCTL_ADDR)")
	tokenFile := fs.String("token-file", "", "a file holding the bearer token (else $LOCKCTL_TOKEN)")
	caFile := fs.String("ca", "", "CA certificates (PEM) to verify an HTTPS replica")
	certFile := fs.String("cert", "", "client certificate (PEM) for HTTPS with client certificates")
	keyFile := fs.String("key", "", "the client certificate's key (PEM)")
	fs.BoolVar(&c.json, "json", false, "print the API's JSON instead of tables")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "bound every request")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() == 0 {
		return nil, nil, errors.New("a command: status, members, locks, inspect, revoke, sessions, transfer-leadership, snapshot save")
	}
	c.base = strings.TrimRight(c.base, "/")
	c.token = os.Getenv("LOCKCTL_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return nil, nil, err
		}
		c.token = strings.TrimSpace(string(b))
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return nil, nil, err
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("-ca: no PEM certificate in %s", *caFile)
		}
	}
	if (*certFile == "") != (*keyFile == "") {
		return nil, nil, errors.New("-cert and -key go together")
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return nil, nil, err
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	c.client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	return c, fs.Args(), nil
}

// command runs one command.
func (c *cli) command(ctx context.Context, args []string) error {
	cmd, rest := args[0], args[1:]
	want := func(n int, usage string) error {
		if len(rest) != n {
			return fmt.Errorf("%w: lockctl %s %s", errUsage, cmd, usage)
		}
		return nil
	}
	switch cmd {
	case "status":
		if err := want(0, ""); err != nil {
			return err
		}
		return c.status(ctx, false)
	case "members":
		if err := want(0, ""); err != nil {
			return err
		}
		return c.status(ctx, true)
	case "locks":
		if len(rest) > 1 {
			return fmt.Errorf("%w: lockctl locks [PREFIX]", errUsage)
		}
		return c.locks(ctx, strings.Join(rest, ""))
	case "inspect":
		if err := want(1, "NAME"); err != nil {
			return err
		}
		return c.inspect(ctx, rest[0])
	case "revoke":
		if err := want(2, "NAME TOKEN"); err != nil {
			return err
		}
		if _, err := strconv.ParseUint(rest[1], 10, 64); err != nil {
			return fmt.Errorf("%w: TOKEN is a positive integer", errUsage)
		}
		return c.revoke(ctx, rest[0], rest[1])
	case "sessions":
		if err := want(0, ""); err != nil {
			return err
		}
		return c.sessions(ctx)
	case "transfer-leadership":
		if err := want(0, ""); err != nil {
			return err
		}
		return c.transfer(ctx)
	case "snapshot":
		if len(rest) != 2 || rest[0] != "save" {
			return fmt.Errorf("%w: lockctl snapshot save FILE", errUsage)
		}
		return c.snapshot(ctx, rest[1])
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// do sends one request; a 2xx answer's body is returned, anything else is
// an error (an *apiError if the server answered).
func (c *cli) do(ctx context.Context, method, path string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, 0, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, res.StatusCode, err
	}
	if res.StatusCode >= 300 {
		var e struct{ Error, Detail string }
		_ = json.Unmarshal(body, &e)
		return nil, res.StatusCode, &apiError{code: res.StatusCode, short: e.Error, text: e.Detail}
	}
	return body, res.StatusCode, nil
}

// get decodes a GET of path into v, or prints its JSON with -json (then v
// is not filled: print is false).
func (c *cli) get(ctx context.Context, path string, v any) (print bool, err error) {
	body, _, err := c.do(ctx, http.MethodGet, path)
	if err != nil {
		return false, err
	}
	if c.json {
		_, err := c.out.Write(body)
		return false, err
	}
	return true, json.Unmarshal(body, v)
}

func (c *cli) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, header)
	for _, r := range rows {
		_, _ = fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// escape is name as one path segment: '/' as %2F, and the names "." and
// "..", which the server's router would take for dot segments, as %2E.
func escape(name string) string {
	if name == "." || name == ".." {
		return strings.Repeat("%2E", len(name))
	}
	return url.PathEscape(name)
}

func ms(v int64) string {
	if v == 0 {
		return "-"
	}
	return (time.Duration(v) * time.Millisecond).String()
}

// jsonNext decodes one page of a list for its cursor.
func jsonNext(body []byte, page any) error { return json.Unmarshal(body, page) }
