"""Python's http.server serving one page for every GET: the same bytes socket-lab's `GET /`
answered, saved to a file by compare.sh.

    python3 benches/http_server.py PORT FILE

ThreadingHTTPServer (a thread per connection), speaking HTTP/1.1 so keep-alive works as it
does for socket-lab and nginx (http.server's default, HTTP/1.0, closes after every request).
Like `socket-lab http --quiet` and nginx's `access_log off`, it logs nothing per request.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(body):
    class PageHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    return PageHandler


def main():
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(__doc__.strip())
        return
    port, page = int(sys.argv[1]), sys.argv[2]
    with open(page, "rb") as f:
        body = f.read()
    ThreadingHTTPServer.daemon_threads = True
    with ThreadingHTTPServer(("127.0.0.1", port), make_handler(body)) as server:
        host, port = server.server_address
        print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
