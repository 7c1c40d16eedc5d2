// The Go side of gonet-rs's KCP interop tests: kcp-go 5.6 speaking gonet frames the way
// Go gonet's KCP session does (one frame per KCP message: one Write per frame, one
// frame per Read).
//
//	peer server  -crypt aes -fec 10,3 [-mode stream]      echo every frame back
//	peer client  -connect ADDR -frames N -crypt ... -fec  send N frames, check the echoes
//	peer capture -frames N -out FILE -crypt ... -fec      record what a client sends
//
// A frame is u16 LE length (of id and body), u32 LE id, body. The key is Go gonet's:
// pbkdf2(password, salt, 1024, 32, sha1), password and salt empty unless given.
//
// Built by the Rust test (gonet/tests/kcp/go.rs) with
// GO111MODULE=off GOPATH=/usr/share/gocode go build, against Debian's kcp-go packages
// (golang-github-xtaci-kcp-dev, golang-golang-x-crypto-dev).
package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	kcp "github.com/xtaci/kcp-go"
	"golang.org/x/crypto/pbkdf2"
)

var (
	listen   = flag.String("listen", "127.0.0.1:0", "server: address to listen on")
	connect  = flag.String("connect", "", "client: server address")
	cryptArg = flag.String("crypt", "off", "off, none, aes, salsa20 or xor")
	password = flag.String("password", "", "key derivation password")
	salt     = flag.String("salt", "", "key derivation salt")
	fecArg   = flag.String("fec", "0,0", "data,parity shards")
	mode     = flag.String("mode", "message", "message or stream")
	frames   = flag.Int("frames", 100, "client/capture: frames to send")
	out      = flag.String("out", "", "capture: file to write")
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "peer: "+format+"\n", args...)
	os.Exit(1)
}

func block() kcp.BlockCrypt {
	key := pbkdf2.Key([]byte(*password), []byte(*salt), 1024, 32, sha1.New)
	var b kcp.BlockCrypt
	var err error
	switch *cryptArg {
	case "off":
		return nil
	case "none":
		b, err = kcp.NewNoneBlockCrypt(key)
	case "aes":
		b, err = kcp.NewAESBlockCrypt(key)
	case "aes-128":
		b, err = kcp.NewAESBlockCrypt(key[:16])
	case "salsa20":
		b, err = kcp.NewSalsa20BlockCrypt(key)
	case "xor":
		b, err = kcp.NewSimpleXORBlockCrypt(key)
	default:
		fail("unknown crypt %q", *cryptArg)
	}
	if err != nil {
		fail("crypt: %v", err)
	}
	return b
}

func shards() (int, int) {
	parts := strings.Split(*fecArg, ",")
	if len(parts) != 2 {
		fail("bad -fec %q", *fecArg)
	}
	d, err1 := strconv.Atoi(parts[0])
	p, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		fail("bad -fec %q", *fecArg)
	}
	return d, p
}

func tune(s *kcp.UDPSession) {
	s.SetNoDelay(1, 10, 2, 1)
	s.SetWindowSize(128, 128)
	s.SetMtu(1400)
	s.SetStreamMode(*mode == "stream")
}

func frame(id uint32, body []byte) []byte {
	f := make([]byte, 6+len(body))
	binary.LittleEndian.PutUint16(f, uint16(4+len(body)))
	binary.LittleEndian.PutUint32(f[2:], id)
	copy(f[6:], body)
	return f
}

// frameReader yields whole frames: in message mode one per Read (as Go gonet reads
// them; a Read that is not exactly one frame is an error), in stream mode cut from the
// stream.
type frameReader struct {
	s   *kcp.UDPSession
	buf []byte
	acc []byte
}

func (r *frameReader) next() ([]byte, error) {
	if *mode == "stream" {
		for {
			if len(r.acc) >= 2 {
				n := 2 + int(binary.LittleEndian.Uint16(r.acc))
				if len(r.acc) >= n {
					f := append([]byte(nil), r.acc[:n]...)
					r.acc = r.acc[n:]
					return f, nil
				}
			}
			n, err := r.s.Read(r.buf)
			if err != nil {
				return nil, err
			}
			r.acc = append(r.acc, r.buf[:n]...)
		}
	}
	n, err := r.s.Read(r.buf)
	if err != nil {
		return nil, err
	}
	if n < 6 || int(binary.LittleEndian.Uint16(r.buf))+2 != n {
		return nil, fmt.Errorf("a Read of %d bytes is not one frame", n)
	}
	return append([]byte(nil), r.buf[:n]...), nil
}

func newReader(s *kcp.UDPSession) *frameReader {
	return &frameReader{s: s, buf: make([]byte, 70000)}
}

func server() {
	d, p := shards()
	l, err := kcp.ListenWithOptions(*listen, block(), d, p)
	if err != nil {
		fail("listen: %v", err)
	}
	fmt.Printf("LISTEN %s\n", l.Addr())
	os.Stdout.Sync()
	for {
		s, err := l.AcceptKCP()
		if err != nil {
			fail("accept: %v", err)
		}
		tune(s)
		go func(s *kcp.UDPSession) {
			defer s.Close()
			r := newReader(s)
			for {
				f, err := r.next()
				if err != nil {
					if err != io.EOF {
						fmt.Fprintf(os.Stderr, "peer: session %d: %v\n", s.GetConv(), err)
					}
					return
				}
				// Go gonet knows no frame of gonet-rs's protocol extension.
				if id := binary.LittleEndian.Uint32(f[2:6]); id >= 0xFFFFFF00 {
					fmt.Fprintf(os.Stderr, "peer: session %d: unknown id 0x%08x\n", s.GetConv(), id)
					continue
				}
				if _, err := s.Write(f); err != nil {
					return
				}
			}
		}(s)
	}
}

// The frames a client sends: JSON echo messages (id 1001), every 10th one large.
func clientFrames(n int) [][]byte {
	var fs [][]byte
	for i := 0; i < n; i++ {
		text := fmt.Sprintf("go frame %d", i)
		if i%10 == 9 {
			text += " " + strings.Repeat("x", 3000+i)
		}
		fs = append(fs, frame(1001, []byte(`{"text":"`+text+`"}`)))
	}
	return fs
}

func client() {
	d, p := shards()
	s, err := kcp.DialWithOptions(*connect, block(), d, p)
	if err != nil {
		fail("dial: %v", err)
	}
	tune(s)
	fs := clientFrames(*frames)
	var wg sync.WaitGroup
	wg.Add(1)
	errs := make(chan error, 1)
	go func() {
		defer wg.Done()
		r := newReader(s)
		s.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i, want := range fs {
			got, err := r.next()
			if err != nil {
				errs <- fmt.Errorf("echo %d: %v", i, err)
				return
			}
			if id := binary.LittleEndian.Uint32(got[2:6]); id >= 0xFFFFFF00 {
				errs <- fmt.Errorf("echo %d: unknown id 0x%08x", i, id)
				return
			}
			if !bytes.Equal(got, want) {
				errs <- fmt.Errorf("echo %d: got %q, want %q", i, trim(got), trim(want))
				return
			}
		}
	}()
	for _, f := range fs {
		if _, err := s.Write(f); err != nil {
			fail("write: %v", err)
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		fail("%v", err)
	default:
	}
	s.Close()
	fmt.Printf("OK %d\n", len(fs))
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// recording logs every datagram a client sends.
type recording struct {
	net.PacketConn
	mu  sync.Mutex
	out []string
}

func (r *recording) WriteTo(b []byte, addr net.Addr) (int, error) {
	r.mu.Lock()
	r.out = append(r.out, "datagram "+hex.EncodeToString(b))
	r.mu.Unlock()
	return r.PacketConn.WriteTo(b, addr)
}

// capture records what a client sends to a peer that never answers, one frame per
// Write a few milliseconds apart (one datagram each, before any resend).
func capture() {
	d, p := shards()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	rec := &recording{PacketConn: conn}
	s, err := kcp.NewConn2(silent.LocalAddr(), block(), d, p, rec)
	if err != nil {
		fail("conn: %v", err)
	}
	tune(s)
	fs := clientFrames(*frames)
	var lines []string
	for _, f := range fs {
		lines = append(lines, "frame "+hex.EncodeToString(f))
		if _, err := s.Write(f); err != nil {
			fail("write: %v", err)
		}
		time.Sleep(3 * time.Millisecond)
	}
	// Long enough for the last writes to leave, short of the first resend.
	time.Sleep(20 * time.Millisecond)
	rec.mu.Lock()
	lines = append(lines, rec.out...)
	rec.mu.Unlock()
	header := fmt.Sprintf("# kcp-go client datagrams: -crypt %s -fec %s -mode %s -frames %d (password and salt empty)\n", *cryptArg, *fecArg, *mode, *frames)
	if err := os.WriteFile(*out, []byte(header+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		fail("write %s: %v", *out, err)
	}
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: peer server|client|capture [flags]")
	}
	cmd := os.Args[1]
	flag.CommandLine.Parse(os.Args[2:])
	switch cmd {
	case "server":
		server()
	case "client":
		client()
	case "capture":
		capture()
	default:
		fail("unknown command %q", cmd)
	}
}
