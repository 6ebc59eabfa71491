package main

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// failurePause keeps a worker whose connects fail (server gone, credentials refused) from
// spinning: failures are not what a storm measures.
const failurePause = time.Millisecond

// runConnect is a connect storm: -c workers each connect (nats.Connect returns after the
// server's PONG to the CONNECT + PING it sends) and close, again and again, for -duration
// or, when -n is given, until -n connects succeeded (or -timeout passed).
func runConnect() {
	workers, goal := *flagWorkers, int64(0)
	if flagGiven("n") {
		goal = int64(*flagMsgs) // -n's default is a message count, not a connect count
	}
	if workers <= 0 || goal < 0 || (goal == 0 && *flagDuration <= 0) {
		die("connect needs -c > 0, and -n > 0 or -duration > 0")
	}
	opts, err := clientOptions("natsbench-connect")
	if err != nil {
		die("%v", err)
	}
	started := time.Now()
	stopAt := started.Add(*flagTimeout)
	if goal == 0 {
		stopAt = started.Add(*flagDuration)
	}
	var succeeded, failed int64
	var firstFailure atomic.Value
	latencies := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for time.Now().Before(stopAt) && (goal == 0 || atomic.LoadInt64(&succeeded) < goal) {
				began := time.Now()
				nc, err := nats.Connect(*flagURL, opts...)
				if err != nil {
					if atomic.AddInt64(&failed, 1) == 1 {
						firstFailure.Store(err.Error())
					}
					time.Sleep(failurePause)
					continue
				}
				latencies[w] = append(latencies[w], time.Since(began))
				nc.Close()
				atomic.AddInt64(&succeeded, 1)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(started)

	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	ok := atomic.LoadInt64(&succeeded)
	res := newResult()
	res["c"], res["n"], res["duration_s"] = workers, goal, roundTo(elapsed.Seconds(), 6)
	res["connects_ok"], res["connects_failed"] = ok, atomic.LoadInt64(&failed)
	res["connects_per_sec"] = roundTo(float64(ok)/elapsed.Seconds(), 2)
	res["complete"] = res["connects_failed"] == int64(0) && ok > 0 && (goal == 0 || ok >= goal)
	if why, has := firstFailure.Load().(string); has {
		res["first_failure"] = why
	}
	res.addLatency(all)
	res.addErrors()
	report("connect: %d connects in %.2f s by %d workers (%.0f/s), %d failed\n",
		ok, elapsed.Seconds(), workers, res["connects_per_sec"], res["connects_failed"])
	report("%s", latencyLine("Connect latency", res))
	res.print()
	if res["complete"] != true {
		exitIncomplete()
	}
}
