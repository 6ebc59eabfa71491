package main

import (
	"fmt"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"time"
)

// exitIncompleteCode is the exit status of a run that finished but did not get everything
// (timeout, lost messages, failed requests or connects): the JSON line says what it got.
const exitIncompleteCode = 3

func exitIncomplete() {
	os.Exit(exitIncompleteCode)
}

func micros(d time.Duration) float64 {
	return roundTo(float64(d)/float64(time.Microsecond), 3)
}

// addLatency puts percentiles (µs) and a log2 histogram of `samples` into the result:
// lat_us{min,mean,p50,p90,p99,p999,max} and hist_log2_us, where bucket "<2^k" counts the
// samples below 2^k µs and at or above the previous bucket's bound.
func (r result) addLatency(samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	sorted := append([]time.Duration(nil), samples...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	// Nearest rank: the smallest sample with at least p% of the samples at or below it.
	at := func(p float64) time.Duration {
		rank := int(p/100*float64(len(sorted))+0.999999) - 1
		if rank < 0 {
			rank = 0
		}
		if rank >= len(sorted) {
			rank = len(sorted) - 1
		}
		return sorted[rank]
	}
	r["lat_us"] = map[string]float64{
		"min":  micros(sorted[0]),
		"mean": micros(sum / time.Duration(len(sorted))),
		"p50":  micros(at(50)),
		"p90":  micros(at(90)),
		"p99":  micros(at(99)),
		"p999": micros(at(99.9)),
		"max":  micros(sorted[len(sorted)-1]),
	}
	buckets := map[int]int{}
	for _, d := range sorted {
		us := uint64(d / time.Microsecond)
		buckets[bits.Len64(us)]++ // 2^(k-1) <= us < 2^k; k = 0 for under 1 µs
	}
	keys := make([]int, 0, len(buckets))
	for k := range buckets {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	hist := make([][2]interface{}, 0, len(keys))
	for _, k := range keys {
		hist = append(hist, [2]interface{}{"<" + strconv.FormatUint(uint64(1)<<uint(k), 10), buckets[k]})
	}
	r["hist_log2_us"] = hist
}

// latencyLine is the report's one-line summary of the latencies in `r`.
func latencyLine(label string, r result) string {
	lat, ok := r["lat_us"].(map[string]float64)
	if !ok {
		return label + ": no samples\n"
	}
	return fmt.Sprintf("%s: min %gus | mean %gus | p50 %gus | p90 %gus | p99 %gus | p99.9 %gus | max %gus\n",
		label, lat["min"], lat["mean"], lat["p50"], lat["p90"], lat["p99"], lat["p999"], lat["max"])
}
