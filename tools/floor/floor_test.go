package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rangeServer serves blob-<n> as n bytes of a pattern, honouring "Range: bytes=a-b" (206)
func rangeServer(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:], "blob-"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		body := pattern(n)
		var a, b int
		if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b); err != nil || a > b || b >= n {
			t.Errorf("bad range %q for %d bytes", r.Header.Get("Range"), n)
			w.WriteHeader(416)
			return
		}
		w.WriteHeader(206)
		w.Write(body[a : b+1])
	}))
}

func pattern(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(i*7 + i/251)
	}
	return out
}

// Many big blobs at once with room for only one or two parts across all of them: every blob still
// comes back whole and in order (each blob's next part always gets a slot, so none waits forever),
// every slot is given back, and no more part buffers are made than there are slots.
func TestRangedBudgetAcrossBlobs(t *testing.T) {
	srv := rangeServer(t)
	defer srv.Close()
	*rangeChunk = 1000
	*rangeParts = 4
	for _, slots := range []int{1, 2, 5} {
		setPartSlots(slots)
		r := registry{endpoint{URL: srv.URL}, client(endpoint{URL: srv.URL})}
		sizes := []int{1, 999, 1000, 1001, 4321, 12000, 7777, 2500}
		var wg sync.WaitGroup
		done := make(chan struct{})
		for _, n := range sizes {
			wg.Add(1)
			go func(n int) {
				defer wg.Done()
				body := r.ranged(fmt.Sprintf("%s/v2/x/blobs/blob-%d", srv.URL, n), blob{Size: int64(n)})
				got, err := io.ReadAll(body)
				if err != nil {
					t.Errorf("blob of %d bytes: %v", n, err)
				}
				if !bytes.Equal(got, pattern(n)) {
					t.Errorf("blob of %d bytes, %d slots: %d bytes back, not the blob in order", n, slots, len(got))
				}
			}(n)
		}
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%d slots: blobs still waiting for parts after 20 s", slots)
		}
		if len(partSlots) != 0 {
			t.Errorf("%d slots: %d still taken after every blob was read", slots, len(partSlots))
		}
		// a buffer more than the slots would block its return to freeParts (capacity: slots) and
		// the wait above would fail; each slot's buffer is back once every blob is read
		if len(freeParts) == 0 {
			t.Errorf("%d slots: no part buffer given back", slots)
		}
	}
}
