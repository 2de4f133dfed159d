// A plain net/http server: the standard library only (no module proxy is reachable from
// builds), built by berth's go buildpack. Go listens with the kernel's full backlog
// (net.core.somaxconn), unlike busybox httpd's 9, so wrk measures berth and nginx rather
// than SYNs dropped by the app and retransmitted a second later. No SIGTERM handler: the
// most common Go app exits at once when stopped, so a request still routed to a retiring
// container would fail and show.
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello\n"))
	})
	log.Fatal(http.ListenAndServe(":"+os.Getenv("PORT"), nil))
}
