package main

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/bench"
)

// receiver is one subscriber's connection and tally. nats.go calls a subscription's handler
// from one goroutine, but the main goroutine reads the tally too, hence the atomics.
type receiver struct {
	nc      *nats.Conn
	want    int64 // messages that complete this subscriber; 0 in a queue group
	got     int64
	firstNs int64 // time of the first message, Unix ns
	lastNs  int64 // time of the wanted-th message (plain subscriber)
	done    chan struct{}
}

// queueTally is what a queue group received in all, and when it had everything.
type queueTally struct {
	want  int64
	got   int64
	endNs int64
	done  chan struct{}
}

func (r *receiver) onMessage(group *queueTally) nats.MsgHandler {
	return func(_ *nats.Msg) {
		n := atomic.AddInt64(&r.got, 1)
		if n == 1 {
			atomic.StoreInt64(&r.firstNs, time.Now().UnixNano())
		}
		if group != nil {
			if atomic.AddInt64(&group.got, 1) == group.want {
				atomic.StoreInt64(&group.endNs, time.Now().UnixNano())
				close(group.done)
			}
			return
		}
		if n == r.want {
			atomic.StoreInt64(&r.lastNs, time.Now().UnixNano())
			close(r.done)
		}
	}
}

// sample is what this receiver measured, or nil when it received nothing (a sample without
// a duration would divide by zero in the bench package).
func (r *receiver) sample(size int, endNs int64) *bench.Sample {
	got := atomic.LoadInt64(&r.got)
	first := atomic.LoadInt64(&r.firstNs)
	if got == 0 || first == 0 || endNs <= first {
		return nil
	}
	return bench.NewSample(int(got), size, time.Unix(0, first), time.Unix(0, endNs), r.nc)
}

func runPubSub() {
	pubs, subs, total, size := *flagPubs, *flagSubs, *flagMsgs, *flagSize
	if pubs < 0 || subs < 0 || pubs+subs == 0 || total <= 0 || size < 0 {
		die("pubsub needs -np >= 0, -ns >= 0 (not both 0), -n > 0 and -ms >= 0")
	}
	wallStart := time.Now()
	deadline := wallStart.Add(*flagTimeout)
	payload := make([]byte, size)
	bm := bench.NewBenchmark("natsbench", subs, pubs)

	var group *queueTally
	expected := int64(total) * int64(subs)
	if *flagQueue != "" && subs > 0 {
		group = &queueTally{want: int64(total), done: make(chan struct{})}
		expected = int64(total)
	}

	// Subscribers first, each flushed, so no published message can miss one.
	receivers := make([]*receiver, subs)
	for i := range receivers {
		r := &receiver{want: int64(total), done: make(chan struct{})}
		if group != nil {
			r.want = 0
		}
		r.nc = mustConnect(fmt.Sprintf("natsbench-sub-%d", i))
		var sub *nats.Subscription
		var err error
		if *flagQueue != "" {
			sub, err = r.nc.QueueSubscribe(*flagSubject, *flagQueue, r.onMessage(group))
		} else {
			sub, err = r.nc.Subscribe(*flagSubject, r.onMessage(nil))
		}
		if err != nil {
			die("subscribe: %v", err)
		}
		// No client-side drop: a message lost to the client's own pending limit would say
		// nothing about the server.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			die("pending limits: %v", err)
		}
		if err := r.nc.Flush(); err != nil {
			die("flush after subscribe: %v", err)
		}
		receivers[i] = r
	}

	// Publishers connect, then start together.
	shares := bench.MsgsPerClient(total, pubs)
	senders := make([]*nats.Conn, pubs)
	for i := range senders {
		senders[i] = mustConnect(fmt.Sprintf("natsbench-pub-%d", i))
	}
	start := make(chan struct{})
	var published sync.WaitGroup
	var publishFailures int64
	for i, nc := range senders {
		published.Add(1)
		go func(nc *nats.Conn, count int) {
			defer published.Done()
			<-start
			began := time.Now()
			for j := 0; j < count; j++ {
				if err := nc.Publish(*flagSubject, payload); err != nil {
					asyncErrors.note(err)
					atomic.AddInt64(&publishFailures, 1)
					return
				}
			}
			// The publisher's time ends when the server has everything: a PING/PONG after
			// the last message.
			if err := nc.FlushTimeout(time.Until(deadline)); err != nil {
				asyncErrors.note(err)
				atomic.AddInt64(&publishFailures, 1)
				return
			}
			bm.AddPubSample(bench.NewSample(count, size, began, time.Now(), nc))
		}(nc, shares[i])
	}
	close(start)
	published.Wait()

	timedOut := false
	wait := func(done <-chan struct{}) {
		if timedOut {
			return
		}
		select {
		case <-done:
		case <-time.After(time.Until(deadline)):
			timedOut = true
		}
	}
	if group != nil {
		wait(group.done)
	} else {
		for _, r := range receivers {
			wait(r.done)
		}
	}
	nowNs := time.Now().UnixNano()
	received := int64(0)
	for _, r := range receivers {
		received += atomic.LoadInt64(&r.got)
		end := atomic.LoadInt64(&r.lastNs)
		if group != nil {
			end = atomic.LoadInt64(&group.endNs)
		}
		if end == 0 {
			end = nowNs // not complete: up to now
		}
		if s := r.sample(size, end); s != nil {
			bm.AddSubSample(s)
		}
	}
	wallEnd := time.Now()
	for _, nc := range senders {
		nc.Close()
	}
	for _, r := range receivers {
		r.nc.Close()
	}
	bm.Close()

	res := newResult()
	res["np"], res["ns"], res["n"], res["ms"] = pubs, subs, total, size
	res["queue"], res["subj"] = *flagQueue, *flagSubject
	res["sub_expected"], res["sub_received"] = expected, received
	res["complete"] = !timedOut && received == expected &&
		atomic.LoadInt64(&publishFailures) == 0 && asyncErrors.total() == 0
	if bm.Pubs.HasSamples() {
		res["pub_msgs_per_sec"] = bm.Pubs.Rate()
		res["pub_mb_per_sec"] = roundTo(bm.Pubs.Throughput()/1e6, 3)
	}
	if bm.Subs.HasSamples() {
		res["sub_msgs_per_sec"] = bm.Subs.Rate()
		res["sub_mb_per_sec"] = roundTo(bm.Subs.Throughput()/1e6, 3)
		res["sub_min_rate"], res["sub_max_rate"] = bm.Subs.MinRate(), bm.Subs.MaxRate()
	}
	if bm.Pubs.HasSamples() || bm.Subs.HasSamples() {
		// Published plus received messages per second: the figure `nats bench` prints first.
		res["total_msgs_per_sec"] = bm.Rate()
		res["duration_s"] = roundTo(bm.Duration().Seconds(), 6)
	}
	res["wall_s"] = roundTo(wallEnd.Sub(wallStart).Seconds(), 6)
	res.addErrors()
	report("%s", bm.Report())
	if timedOut {
		report("natsbench: not complete after %v: %d of %d messages received\n", *flagTimeout, received, expected)
	}
	res.print()
	if res["complete"] != true {
		exitIncomplete()
	}
}

func roundTo(f float64, digits int) float64 {
	scale := math.Pow(10, float64(digits))
	return math.Round(f*scale) / scale
}
