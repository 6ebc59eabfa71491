package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/bench"
)

// runReqRep measures request/reply round trips: each requester sends its share of -n
// requests one after another and times each from Request() to its reply.
func runReqRep() {
	requesters, responders, total, size := *flagPubs, *flagSubs, *flagMsgs, *flagSize
	if responders == 0 {
		responders = 1
	}
	if requesters <= 0 || responders < 0 || total <= 0 || size < 0 {
		die("reqrep needs -np > 0, -ns >= 0, -n > 0 and -ms >= 0")
	}
	started := time.Now()
	deadline := started.Add(*flagTimeout)
	payload := make([]byte, size)

	answerers := make([]*nats.Conn, responders)
	for i := range answerers {
		nc := mustConnect(fmt.Sprintf("natsbench-responder-%d", i))
		answer := func(m *nats.Msg) {
			if err := m.Respond(m.Data); err != nil {
				asyncErrors.note(err)
			}
		}
		var err error
		if *flagQueue != "" {
			_, err = nc.QueueSubscribe(*flagSubject, *flagQueue, answer)
		} else {
			_, err = nc.Subscribe(*flagSubject, answer)
		}
		if err != nil {
			die("subscribe: %v", err)
		}
		if err := nc.Flush(); err != nil {
			die("flush after subscribe: %v", err)
		}
		answerers[i] = nc
	}

	shares := bench.MsgsPerClient(total, requesters)
	askers := make([]*nats.Conn, requesters)
	for i := range askers {
		askers[i] = mustConnect(fmt.Sprintf("natsbench-requester-%d", i))
	}
	latencies := make([][]time.Duration, requesters)
	failures := make([]int, requesters)
	var wg sync.WaitGroup
	for i, nc := range askers {
		wg.Add(1)
		go func(i int, nc *nats.Conn, count int) {
			defer wg.Done()
			for j := 0; j < *flagWarmup && time.Now().Before(deadline); j++ {
				if _, err := nc.Request(*flagSubject, payload, *flagReqTimeout); err != nil {
					failures[i]++
				}
			}
			mine := make([]time.Duration, 0, count)
			for j := 0; j < count; j++ {
				if !time.Now().Before(deadline) {
					failures[i] += count - j
					break
				}
				sent := time.Now()
				if _, err := nc.Request(*flagSubject, payload, *flagReqTimeout); err != nil {
					failures[i]++
					continue
				}
				mine = append(mine, time.Since(sent))
			}
			latencies[i] = mine
		}(i, nc, shares[i])
	}
	wg.Wait()
	elapsed := time.Since(started)
	for _, nc := range askers {
		nc.Close()
	}
	for _, nc := range answerers {
		nc.Close()
	}

	var all []time.Duration
	failed := 0
	for i := range latencies {
		all = append(all, latencies[i]...)
		failed += failures[i]
	}
	res := newResult()
	res["np"], res["ns"], res["n"], res["ms"] = requesters, responders, total, size
	res["queue"], res["subj"] = *flagQueue, *flagSubject
	res["requests_ok"], res["requests_failed"] = len(all), failed
	res["req_per_sec"] = int64(float64(len(all)) / elapsed.Seconds())
	res["duration_s"] = roundTo(elapsed.Seconds(), 6)
	res["complete"] = failed == 0 && len(all) == total && asyncErrors.total() == 0
	res.addLatency(all)
	res.addErrors()
	report("reqrep: %d requests answered, %d failed, %d requests/s\n", len(all), failed, res["req_per_sec"])
	report("%s", latencyLine("Request latency", res))
	res.print()
	if res["complete"] != true {
		exitIncomplete()
	}
}
