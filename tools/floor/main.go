// floor: the least client work that moves a relocation's unique bytes once over the same path as
// the tools the benchmark measures, so every tool's time is also a fraction of what the machine
// can do. It does nothing a real tool must do and is not a tool: no digest checks, no retries,
// no auth negotiation (Basic sent up front), no manifest parsing (the benchmark gives it the
// plan). The benchmark checks that no tool beats it; if one does, this program is wrong.
//
//	floor copy      -plan PLAN.json   registry to registry: blobs in parallel (largest first),
//	                                  each GET streamed into a monolithic PUT; other repositories
//	                                  mount; then the manifests (fetched in parallel), leaves first
//	floor write-tar -plan PLAN.json -out FILE   every blob and manifest into one tar whose layout
//	                                  is computed up front, so downloads write in parallel (pwrite);
//	                                  with -direct around the page cache (O_DIRECT, as kpi writes)
//	                                  and synced: on disk when it returns
//	floor read-tar  -plan PLAN.json -in FILE    the same tar into the destination, uploads in parallel,
//	                                  read with O_DIRECT where the file system allows it (as kpi reads)
//	floor head      -plan PLAN.json   one HEAD per tagged manifest at the destination: the least a
//	                                  tool can do to find that nothing needs to move
//
// With -range-min, blobs at least that big come down as parallel Range GETs of -range-chunk bytes,
// -range-parts at a time, put back in order into the one upload (what wins behind a WAN), at most
// -range-budget bytes of parts held across blobs.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"

	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type endpoint struct {
	URL      string `json:"url"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	CAFile   string `json:"caFile,omitempty"`
}

type blob struct {
	Digest string   `json:"digest"`
	Size   int64    `json:"size"`
	Src    string   `json:"src"`
	Dst    string   `json:"dst"`
	Mounts []string `json:"mounts,omitempty"`
}

type manifest struct {
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Src       string   `json:"src"`
	Dst       string   `json:"dst"`
	Tags      []string `json:"tags,omitempty"`
	Index     bool     `json:"index,omitempty"`
}

type plan struct {
	Source    endpoint   `json:"source"`
	Dest      endpoint   `json:"dest"`
	Blobs     []blob     `json:"blobs"`
	Manifests []manifest `json:"manifests"`
}

var (
	jobs        = flag.Int("jobs", 8, "blobs in flight")
	rangeMin    = flag.Int64("range-min", 0, "blobs at least this big come down as parallel Range GETs (0: never)")
	rangeChunk  = flag.Int64("range-chunk", 8<<20, "bytes per Range GET")
	rangeParts  = flag.Int("range-parts", 4, "Range GETs in flight per blob")
	rangeBudget = flag.Int64("range-budget", 256<<20, "bytes of Range parts held at once, across blobs")
	h2          = flag.Bool("h2", false, "allow HTTP/2 to TLS registries")
	planFile    = flag.String("plan", "", "plan file")
	outFile     = flag.String("out", "", "write-tar: the archive")
	direct      = flag.Bool("direct", false, "write-tar: write around the page cache (O_DIRECT, where allowed) and sync before returning")
	inFile      = flag.String("in", "", "read-tar: the archive")
)

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "floor: "+f+"\n", a...)
	os.Exit(1)
}

func client(e endpoint) *http.Client {
	tr := &http.Transport{
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
		ForceAttemptHTTP2:   *h2,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      256 << 10,
	}
	if !*h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			die("%v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type registry struct {
	e endpoint
	c *http.Client
}

func (r registry) do(method, u string, body io.Reader, size int64, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	if r.e.Username != "" {
		req.SetBasicAuth(r.e.Username, r.e.Password)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return r.c.Do(req)
}

func expect(res *http.Response, err error, what string, codes ...int) *http.Response {
	if err != nil {
		die("%s: %v", what, err)
	}
	for _, c := range codes {
		if res.StatusCode == c {
			return res
		}
	}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	die("%s: %s %s", what, res.Status, strings.TrimSpace(string(b)))
	return nil
}

func drain(res *http.Response) {
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

// get opens a blob of the source: one GET, or ordered parallel Range GETs for a big one.
func (r registry) get(repo string, b blob) io.ReadCloser {
	u := fmt.Sprintf("%s/v2/%s/blobs/%s", r.e.URL, repo, b.Digest)
	if *rangeMin <= 0 || b.Size < *rangeMin {
		res, err := r.do("GET", u, nil, 0, nil)
		return expect(res, err, "GET "+b.Digest, 200).Body
	}
	return r.ranged(u, b)
}

// ranged: parts of -range-chunk bytes, -range-parts in flight per blob and -range-budget bytes of
// parts across blobs, read back in order through a pipe. Part buffers are reused: allocated anew
// for each part and left to the collector, the parts behind the WAN profile took the floor to
// 0.9-1.2 GiB of RSS, and on the benchmark's VM memory the host took back costs a fault per page
// when it is touched again, the destination registry's page-cache writes included (12-17 CPU-s
// of destination against kpi's 9, and the floor slower than kpi).
func (r registry) ranged(u string, b blob) io.ReadCloser {
	n := int((b.Size + *rangeChunk - 1) / *rangeChunk)
	parts := make([]chan []byte, n)
	for i := range parts {
		parts[i] = make(chan []byte, 1)
	}
	sem := make(chan struct{}, *rangeParts)
	go func() {
		for i := 0; i < n; i++ {
			sem <- struct{}{}
			// taken in order within a blob, so each blob's next part to write always has its slot
			partSlots <- struct{}{}
			go func(i int) {
				from := int64(i) * *rangeChunk
				to := min(from+*rangeChunk, b.Size) - 1
				res, err := r.do("GET", u, nil, 0, map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", from, to)})
				res = expect(res, err, "GET range of "+b.Digest, 206)
				buf := takePart()[:to-from+1]
				if _, err := io.ReadFull(res.Body, buf); err != nil {
					die("GET range of %s: %v", b.Digest, err)
				}
				res.Body.Close()
				parts[i] <- buf
			}(i)
		}
	}()
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < n; i++ {
			buf := <-parts[i]
			<-sem
			_, err := pw.Write(buf)
			freeParts <- buf[:cap(buf)]
			<-partSlots
			if err != nil {
				return
			}
		}
		pw.Close()
	}()
	return pr
}

var (
	partSlots chan struct{}
	freeParts chan []byte
)

// setPartSlots makes room for n Range parts at once across blobs, and for their n buffers.
func setPartSlots(n int) {
	partSlots = make(chan struct{}, n)
	freeParts = make(chan []byte, n)
}

func takePart() []byte {
	select {
	case buf := <-freeParts:
		return buf
	default:
		return make([]byte, *rangeChunk)
	}
}

// put uploads one blob: POST for a session, then one PUT with the whole body.
func (r registry) put(repo, digest string, size int64, body io.Reader) {
	res, err := r.do("POST", fmt.Sprintf("%s/v2/%s/blobs/uploads/", r.e.URL, repo), bytes.NewReader(nil), 0, nil)
	res = expect(res, err, "POST upload "+digest, 202)
	drain(res)
	loc, err := url.Parse(r.e.URL)
	if err != nil {
		die("%v", err)
	}
	target, err := loc.Parse(res.Header.Get("Location"))
	if err != nil {
		die("upload location: %v", err)
	}
	q := target.Query()
	q.Set("digest", digest)
	target.RawQuery = q.Encode()
	res, err = r.do("PUT", target.String(), body, size, map[string]string{"Content-Type": "application/octet-stream"})
	drain(expect(res, err, "PUT "+digest, 201))
}

func (r registry) mount(repo, digest, from string) {
	u := fmt.Sprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", r.e.URL, repo, url.QueryEscape(digest), url.QueryEscape(from))
	res, err := r.do("POST", u, bytes.NewReader(nil), 0, nil)
	drain(expect(res, err, "mount "+digest, 201))
}

func (r registry) getManifest(m manifest) []byte {
	res, err := r.do("GET", fmt.Sprintf("%s/v2/%s/manifests/%s", r.e.URL, m.Src, m.Digest), nil, 0, map[string]string{"Accept": m.MediaType})
	res = expect(res, err, "GET manifest "+m.Digest, 200)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		die("GET manifest %s: %v", m.Digest, err)
	}
	return b
}

func (r registry) putManifest(m manifest, body []byte) {
	refs := m.Tags
	if len(refs) == 0 {
		refs = []string{m.Digest}
	}
	for _, ref := range refs {
		res, err := r.do("PUT", fmt.Sprintf("%s/v2/%s/manifests/%s", r.e.URL, m.Dst, ref), bytes.NewReader(body), int64(len(body)), map[string]string{"Content-Type": m.MediaType})
		drain(expect(res, err, "PUT manifest "+m.Digest, 201))
	}
}

// parallel runs f over 0..n-1, at most k at once.
func parallel(n, k int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, k)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}(i)
	}
	wg.Wait()
}

// largest first: the longest transfer starts first and the others fill in around it
func bySizeDesc(bs []blob) []blob {
	out := append([]blob(nil), bs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Size > out[j].Size })
	return out
}

// pushManifests: image manifests in parallel, then the indexes over them.
func pushManifests(dst registry, ms []manifest, bodies [][]byte) {
	for _, index := range []bool{false, true} {
		var idx []int
		for i, m := range ms {
			if m.Index == index {
				idx = append(idx, i)
			}
		}
		parallel(len(idx), *jobs, func(k int) { dst.putManifest(ms[idx[k]], bodies[idx[k]]) })
	}
}

func fetchManifests(src registry, ms []manifest) [][]byte {
	bodies := make([][]byte, len(ms))
	parallel(len(ms), 16, func(i int) { bodies[i] = src.getManifest(ms[i]) })
	return bodies
}

func mountAll(dst registry, b blob) {
	for _, m := range b.Mounts {
		dst.mount(m, b.Digest, b.Dst)
	}
}

func copyAll(p plan, src, dst registry) {
	bodies := make(chan [][]byte, 1)
	go func() { bodies <- fetchManifests(src, p.Manifests) }()
	blobs := bySizeDesc(p.Blobs)
	parallel(len(blobs), *jobs, func(i int) {
		b := blobs[i]
		body := src.get(b.Src, b)
		dst.put(b.Dst, b.Digest, b.Size, body)
		body.Close()
		mountAll(dst, b)
	})
	pushManifests(dst, p.Manifests, <-bodies)
}

// ---- the archive: a tar whose every member's offset is known before a byte is written ----

type member struct {
	name   string
	size   int64
	offset int64 // of the content; the header is the 512 bytes before
}

func tarHeader(name string, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	copy(h[124:136], fmt.Sprintf("%011o\x00", size))
	copy(h[136:148], "00000000000\x00")
	h[156] = '0'
	copy(h[257:263], "ustar\x00")
	copy(h[263:265], "00")
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

func layout(p plan, manifestSizes []int64) ([]member, int64) {
	var ms []member
	off := int64(0)
	add := func(name string, size int64) {
		ms = append(ms, member{name: name, size: size, offset: off + 512})
		off += 512 + (size+511)/512*512
	}
	for _, b := range p.Blobs {
		add("blobs/sha256/"+strings.TrimPrefix(b.Digest, "sha256:"), b.Size)
	}
	for i, m := range p.Manifests {
		add("manifests/sha256/"+strings.TrimPrefix(m.Digest, "sha256:"), manifestSizes[i])
	}
	return ms, off + 1024
}

func writeTar(p plan, src registry, out string) {
	bodies := fetchManifests(src, p.Manifests)
	sizes := make([]int64, len(bodies))
	for i, b := range bodies {
		sizes[i] = int64(len(b))
	}
	members, total := layout(p, sizes)
	if *direct {
		if f := createDirect(out, total); f != nil {
			writeTarDirect(f, p, src, members, bodies, total)
			return
		}
	}
	f, err := os.Create(out)
	if err != nil {
		die("%v", err)
	}
	if err := f.Truncate(total); err != nil {
		die("%v", err)
	}
	for _, m := range members {
		if _, err := f.WriteAt(tarHeader(m.name, m.size), m.offset-512); err != nil {
			die("%v", err)
		}
	}
	for i := range p.Manifests {
		m := members[len(p.Blobs)+i]
		if _, err := f.WriteAt(bodies[i], m.offset); err != nil {
			die("%v", err)
		}
	}
	copyBlobs(p, src, func(i int, body io.Reader) (int64, error) {
		return io.Copy(io.NewOffsetWriter(f, members[i].offset), body)
	})
	if *direct {
		if err := f.Sync(); err != nil {
			die("%v", err)
		}
	}
	if err := f.Close(); err != nil {
		die("%v", err)
	}
}

// writeTarDirect writes each member (header, body, padding: one run of whole 512-byte blocks)
// through an aligned buffer with O_DIRECT, as kpi writes archives, then syncs the file's size.
func writeTarDirect(f *os.File, p plan, src registry, members []member, bodies [][]byte, total int64) {
	for i := range p.Manifests {
		m := members[len(p.Blobs)+i]
		w := newRunWriter(f, m.offset-512)
		w.Write(tarHeader(m.name, m.size))
		w.Write(bodies[i])
		if err := w.flush(); err != nil {
			die("%v", err)
		}
	}
	end := newRunWriter(f, total-1024)
	end.Write(make([]byte, 1024))
	if err := end.flush(); err != nil {
		die("%v", err)
	}
	copyBlobs(p, src, func(i int, body io.Reader) (int64, error) {
		w := newRunWriter(f, members[i].offset-512)
		w.Write(tarHeader(members[i].name, members[i].size))
		n, err := w.ReadFrom(body)
		if err == nil {
			err = w.flush()
		}
		return n, err
	})
	if err := f.Sync(); err != nil {
		die("%v", err)
	}
	if err := f.Close(); err != nil {
		die("%v", err)
	}
}

// copyBlobs downloads every blob of the plan, largest first, -jobs at a time, and has `put` write
// blob i's body where it belongs in the archive; put returns the bytes it wrote.
func copyBlobs(p plan, src registry, put func(i int, body io.Reader) (int64, error)) {
	order := make([]int, len(p.Blobs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return p.Blobs[order[a]].Size > p.Blobs[order[b]].Size })
	parallel(len(order), *jobs, func(k int) {
		b := p.Blobs[order[k]]
		body := src.get(b.Src, b)
		n, err := put(order[k], body)
		body.Close()
		if err != nil || n != b.Size {
			die("writing %s: %d of %d bytes: %v", b.Digest, n, b.Size, err)
		}
	})
}

// readTar finds the members by their headers (it trusts nothing else in the file) and uploads them.
func readTar(p plan, dst registry, in string) {
	f, err := os.Open(in)
	if err != nil {
		die("%v", err)
	}
	defer f.Close()
	at := map[string]member{}
	var off int64
	h := make([]byte, 512)
	for {
		if _, err := f.ReadAt(h, off); err != nil {
			die("reading %s: %v", in, err)
		}
		if h[0] == 0 {
			break
		}
		name := string(bytes.TrimRight(h[0:100], "\x00"))
		var size int64
		fmt.Sscanf(strings.Trim(string(h[124:136]), "\x00 "), "%o", &size)
		at[name] = member{name: name, size: size, offset: off + 512}
		off += 512 + (size+511)/512*512
	}
	find := func(kind, digest string) member {
		m, ok := at[kind+"/sha256/"+strings.TrimPrefix(digest, "sha256:")]
		if !ok {
			die("%s has no %s", in, digest)
		}
		return m
	}
	direct := openDirect(in)
	if direct != nil {
		defer direct.Close()
	}
	blobs := bySizeDesc(p.Blobs)
	parallel(len(blobs), *jobs, func(i int) {
		b := blobs[i]
		m := find("blobs", b.Digest)
		var body io.Reader = io.NewSectionReader(f, m.offset, m.size)
		if direct != nil {
			body = newDirectReader(direct, m.offset, m.size)
		}
		dst.put(b.Dst, b.Digest, b.Size, body)
		mountAll(dst, b)
	})
	bodies := make([][]byte, len(p.Manifests))
	for i, mf := range p.Manifests {
		m := find("manifests", mf.Digest)
		bodies[i] = make([]byte, m.size)
		if _, err := f.ReadAt(bodies[i], m.offset); err != nil {
			die("%v", err)
		}
	}
	pushManifests(dst, p.Manifests, bodies)
}

// headAll asks the destination for every tagged manifest; any missing one is an error.
func headAll(p plan, dst registry) {
	var roots []manifest
	for _, m := range p.Manifests {
		if len(m.Tags) > 0 {
			roots = append(roots, m)
		}
	}
	parallel(len(roots), 16, func(i int) {
		m := roots[i]
		res, err := dst.do("HEAD", fmt.Sprintf("%s/v2/%s/manifests/%s", dst.e.URL, m.Dst, m.Tags[0]), nil, 0, map[string]string{"Accept": m.MediaType})
		drain(expect(res, err, "HEAD manifest "+m.Dst+":"+m.Tags[0], 200))
	})
}

func main() {
	if len(os.Args) < 2 {
		die("usage: floor copy|write-tar|read-tar -plan FILE [-out FILE|-in FILE] [-jobs N] [-range-min BYTES]")
	}
	cmd := os.Args[1]
	flag.CommandLine.Parse(os.Args[2:])
	raw, err := os.ReadFile(*planFile)
	if err != nil {
		die("-plan: %v", err)
	}
	var p plan
	if err := json.Unmarshal(raw, &p); err != nil {
		die("-plan %s: %v", *planFile, err)
	}
	setPartSlots(max(1, int(*rangeBudget / *rangeChunk)))
	src := registry{p.Source, client(p.Source)}
	dst := registry{p.Dest, client(p.Dest)}
	start := time.Now()
	var moved int64
	for _, b := range p.Blobs {
		moved += b.Size
	}
	switch cmd {
	case "copy":
		copyAll(p, src, dst)
	case "write-tar":
		if *outFile == "" {
			die("write-tar needs -out")
		}
		writeTar(p, src, *outFile)
	case "read-tar":
		if *inFile == "" {
			die("read-tar needs -in")
		}
		readTar(p, dst, *inFile)
	case "head":
		headAll(p, dst)
		moved = 0
	default:
		die("unknown command %q", cmd)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{"ok": true, "bytesMoved": moved, "blobs": len(p.Blobs), "ms": time.Since(start).Milliseconds()})
}
