package main

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// directAlign is what O_DIRECT asks of offsets, lengths and memory: 4096 serves disks with 512-
// and 4096-byte sectors alike.
const directAlign = 4096

// directBuffer is the bytes each upload reads at once with O_DIRECT.
const directBuffer = 1 << 20

// openDirect opens the archive a second time for reads that bypass the page cache, as kpi reads
// archives: on the benchmark's VM a page-cache page costs a fault on memory the host took back,
// which made the floor's archive read cost more CPU than kpi's. nil where O_DIRECT is refused.
func openDirect(name string) *os.File {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	buf := alignedBuffer()
	if _, err := f.ReadAt(buf[:directAlign], 0); err != nil && err != io.EOF {
		f.Close()
		return nil
	}
	return f
}

func alignedBuffer() []byte {
	raw := make([]byte, directBuffer+directAlign)
	skip := int(-uintptr(unsafe.Pointer(&raw[0])) & (directAlign - 1))
	return raw[skip : skip+directBuffer]
}

// directReader reads [off, end) of an O_DIRECT file through one aligned buffer.
type directReader struct {
	f        *os.File
	off, end int64
	buf      []byte
	pending  []byte
}

func newDirectReader(f *os.File, off, n int64) io.Reader {
	return &directReader{f: f, off: off, end: off + n, buf: alignedBuffer()}
}

func (r *directReader) Read(p []byte) (int, error) {
	if len(r.pending) == 0 {
		if r.off >= r.end {
			return 0, io.EOF
		}
		start := r.off &^ (directAlign - 1)
		k, err := r.f.ReadAt(r.buf, start)
		if err != nil && err != io.EOF {
			return 0, err
		}
		skip := r.off - start
		avail := int64(k) - skip
		if avail <= 0 {
			return 0, io.ErrUnexpectedEOF
		}
		if avail > r.end-r.off {
			avail = r.end - r.off
		}
		r.pending = r.buf[skip : skip+avail]
		r.off += avail
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// createDirect creates the archive for writes that bypass the page cache, `size` bytes long; nil
// where O_DIRECT is refused, or 512-byte blocks are (a disk with 4096-byte sectors): kpi keeps the
// page cache there too.
func createDirect(name string, size int64) *os.File {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_DIRECT, 0o644)
	if err != nil {
		return nil
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil
	}
	if _, err := f.WriteAt(alignedBuffer()[:512], 0); err != nil {
		f.Close()
		os.Remove(name)
		return nil
	}
	return f
}

// runWriter writes one run of whole 512-byte blocks from `off` through an aligned buffer; flush
// pads the last block with zeros.
type runWriter struct {
	f   *os.File
	off int64
	buf []byte
	n   int
}

func newRunWriter(f *os.File, off int64) *runWriter {
	return &runWriter{f: f, off: off, buf: alignedBuffer()}
}

func (w *runWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := copy(w.buf[w.n:], p)
		w.n += k
		p = p[k:]
		if w.n == len(w.buf) {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return total, nil
}

// ReadFrom reads straight into the aligned buffer: no copy on the way.
func (w *runWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		k, err := r.Read(w.buf[w.n:])
		w.n += k
		total += int64(k)
		if w.n == len(w.buf) {
			if e := w.flush(); e != nil {
				return total, e
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (w *runWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	n := (w.n + 511) &^ 511
	clear(w.buf[w.n:n])
	_, err := w.f.WriteAt(w.buf[:n], w.off)
	w.off += int64(n)
	w.n = 0
	return err
}
