package main

import (
	"net"
	"strconv"
	"sync"
)

// listeners are the probe's TCP listeners by port; they keep accepting
// (and closing) connections between invocations, for neighbours to try.
var (
	listenMu  sync.Mutex
	listeners = map[int]net.Listener{}
)

// listenAll listens on 0.0.0.0:port (once per port) and reports the
// sandbox's IPv4 address on its default route in Results["addrs"] (""
// when it has no route out; netlink sockets are refused by seccomp, so
// a UDP "connect", which sends nothing, asks the kernel instead).
func listenAll(r *Reply, port int) {
	listenMu.Lock()
	if _, ok := listeners[port]; !ok {
		ln, err := net.Listen("tcp4", "0.0.0.0:"+strconv.Itoa(port))
		r.Results["listen"] = res(err)
		if err == nil {
			listeners[port] = ln
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
	} else {
		r.Results["listen"] = "ok"
	}
	listenMu.Unlock()
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		r.Results["route"] = res(err)
		r.Results["addrs"] = ""
		return
	}
	r.Results["addrs"] = c.LocalAddr().(*net.UDPAddr).IP.String()
	c.Close()
}
