// Command natsbench is ringnats' independent load generator: a few hundred lines of our own
// around the official Go client (nats.go) and its bench package, the library behind
// `nats bench`. The client, its protocol code and the rate arithmetic are nats.go's, so a
// figure it reports against ringnats and against nats-server comes from code neither server
// wrote. Built offline from Debian's packages by tools/natsbench/build.sh.
//
// Modes (-mode):
//
//	pubsub   -np publishers and -ns subscribers (-q: one queue group); -n messages in all,
//	         split over the publishers; -ms bytes each. Every plain subscriber must get all
//	         -n, a queue group -n in total.
//	reqrep   -np requesters, -ns responders (0 means 1); -n sequential requests in all;
//	         latency percentiles and a log2 histogram.
//	connect  -c workers connect (CONNECT + PING/PONG) and close in a loop for -duration,
//	         or until -n connects; connects/s and latency.
//	keygen   a bcrypt hash of -pass and a fresh user nkey, for writing server configs.
//
// Output: the human-readable report on stderr (none with -quiet) and one JSON line on
// stdout, whose keys scripts/compare.py reads. Credentials never reach either.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Every flag, in one place. scripts/compare.py and perf/record.sh pass them (Load.natsbench_args).
var (
	flagURL         = flag.String("s", nats.DefaultURL, "server URL (nats://, tls://); may carry token@ or user:pass@")
	flagMode        = flag.String("mode", "pubsub", "pubsub | reqrep | connect | keygen")
	flagSubject     = flag.String("subj", "bench.subj", "subject")
	flagPubs        = flag.Int("np", 1, "publishers (requesters in reqrep mode)")
	flagSubs        = flag.Int("ns", 0, "subscribers (responders in reqrep mode, where 0 means 1)")
	flagMsgs        = flag.Int("n", 100000, "messages in all (pubsub), requests (reqrep), connects (connect; 0: run for -duration)")
	flagSize        = flag.Int("ms", 128, "payload bytes")
	flagQueue       = flag.String("q", "", "queue group of the subscribers or responders")
	flagUser        = flag.String("user", "", "user name")
	flagPass        = flag.String("pass", "", "password (in keygen mode: the password to hash)")
	flagToken       = flag.String("token", "", "authentication token")
	flagNkey        = flag.String("nkey", "", "file holding a user nkey seed")
	flagCreds       = flag.String("creds", "", "credentials file (user JWT and seed)")
	flagTLSCA       = flag.String("tlsca", "", "CA certificate of the server (turns TLS on)")
	flagTLSCert     = flag.String("tlscert", "", "client certificate")
	flagTLSKey      = flag.String("tlskey", "", "client key")
	flagTimeout     = flag.Duration("timeout", 30*time.Second, "bound on the whole run; past it the result says complete:false")
	flagConnTimeout = flag.Duration("conn-timeout", 10*time.Second, "bound on one connect")
	flagWorkers     = flag.Int("c", 4, "connect workers (connect mode)")
	flagDuration    = flag.Duration("duration", 3*time.Second, "length of a connect run when -n is 0")
	flagWarmup      = flag.Int("warmup", 100, "unrecorded requests per requester before timing (reqrep)")
	flagReqTimeout  = flag.Duration("req-timeout", 5*time.Second, "bound on one request (reqrep)")
	flagBcryptCost  = flag.Int("bcrypt-cost", 11, "bcrypt cost (keygen)")
	flagLabel       = flag.String("label", "", "free text copied into the JSON line")
	flagQuiet       = flag.Bool("quiet", false, "no report on stderr")
)

// result is the JSON line; each mode adds its own keys to the common ones.
type result map[string]interface{}

func newResult() result {
	return result{
		"tool":       "natsbench",
		"nats_go":    nats.Version,
		"go":         runtime.Version(),
		"gomaxprocs": runtime.GOMAXPROCS(0),
		"mode":       *flagMode,
		"url":        publicURL(*flagURL),
		"auth":       authKind(),
		"tls":        *flagTLSCA != "" || strings.HasPrefix(*flagURL, "tls://"),
		"label":      *flagLabel,
		"time":       time.Now().UTC().Format(time.RFC3339),
	}
}

func (r result) print() {
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false) // "<2^k" histogram labels as they are
	if err := out.Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, "natsbench: cannot write the result:", err)
		os.Exit(1)
	}
}

// flagGiven says whether `name` was on the command line (not just its default).
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func report(format string, a ...interface{}) {
	if !*flagQuiet {
		fmt.Fprintf(os.Stderr, format, a...)
	}
}

// die prints the reason and a JSON line with complete:false, so a driver records why.
func die(format string, a ...interface{}) {
	why := fmt.Sprintf(format, a...)
	fmt.Fprintln(os.Stderr, "natsbench: "+why)
	r := newResult()
	r["complete"] = false
	r["fatal"] = why
	r.print()
	os.Exit(1)
}

// publicURL drops any user, password or token from the server URLs.
func publicURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable)"
			continue
		}
		u.User = nil
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// authKind names the way this run authenticates, never the secret.
func authKind() string {
	switch {
	case *flagCreds != "":
		return "creds"
	case *flagNkey != "":
		return "nkey"
	case *flagToken != "":
		return "token"
	case *flagUser != "":
		return "user"
	}
	u, err := url.Parse(strings.Split(*flagURL, ",")[0])
	if err != nil || u.User == nil {
		return "none"
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return "user"
	}
	return "token"
}

// clientErrors counts what the client reports asynchronously (slow consumer, disconnects):
// a run with any is not complete.
type clientErrors struct {
	mu    sync.Mutex
	count map[string]int
}

var asyncErrors = clientErrors{count: map[string]int{}}

// maxErrorText bounds one remembered error text.
const maxErrorText = 120

func (e *clientErrors) note(err error) {
	if err == nil {
		return
	}
	text := err.Error()
	if len(text) > maxErrorText {
		text = text[:maxErrorText]
	}
	e.mu.Lock()
	e.count[text]++
	e.mu.Unlock()
}

func (e *clientErrors) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.count {
		n += c
	}
	return n
}

func (e *clientErrors) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.count))
	for text, c := range e.count {
		out = append(out, fmt.Sprintf("%d x %s", c, text))
	}
	sort.Strings(out)
	return out
}

// addErrors puts the asynchronous errors into the result, when there were any.
func (r result) addErrors() {
	if asyncErrors.total() > 0 {
		r["async_errors"] = asyncErrors.list()
	}
}

func clientOptions(name string) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.NoReconnect(),
		nats.Timeout(*flagConnTimeout),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErrors.note(err) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { asyncErrors.note(err) }),
	}
	if *flagUser != "" {
		opts = append(opts, nats.UserInfo(*flagUser, *flagPass))
	}
	if *flagToken != "" {
		opts = append(opts, nats.Token(*flagToken))
	}
	if *flagNkey != "" {
		opt, err := nats.NkeyOptionFromSeed(*flagNkey)
		if err != nil {
			return nil, fmt.Errorf("nkey seed %s: %v", *flagNkey, err)
		}
		opts = append(opts, opt)
	}
	if *flagCreds != "" {
		opts = append(opts, nats.UserCredentials(*flagCreds))
	}
	if *flagTLSCA != "" {
		opts = append(opts, nats.RootCAs(*flagTLSCA))
	}
	if *flagTLSCert != "" {
		opts = append(opts, nats.ClientCert(*flagTLSCert, *flagTLSKey))
	}
	return opts, nil
}

// mustConnect connects or ends the run: every mode but connect needs all its clients.
func mustConnect(name string) *nats.Conn {
	opts, err := clientOptions(name)
	if err != nil {
		die("%v", err)
	}
	nc, err := nats.Connect(*flagURL, opts...)
	if err != nil {
		die("connect to %s: %v", publicURL(*flagURL), err)
	}
	return nc
}

func main() {
	flag.Parse()
	if flag.NArg() > 0 {
		die("unexpected argument %q (flags only; see -h)", flag.Arg(0))
	}
	switch *flagMode {
	case "pubsub":
		runPubSub()
	case "reqrep":
		runReqRep()
	case "connect":
		runConnect()
	case "keygen":
		runKeygen()
	default:
		die("unknown -mode %q (pubsub, reqrep, connect, keygen)", *flagMode)
	}
}
