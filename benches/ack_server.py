"""The walkthrough's server.py as Python's standard library would serve many clients at once:
socketserver.ThreadingTCPServer, a thread per connection, recv(1024), one ack per recv.

    python3 benches/ack_server.py PORT        # 0 picks a free port

The first line on stderr is "listening on 127.0.0.1:PORT", as socket-lab prints it. Like
`socket-lab server --quiet`, it does not print each message: compare.sh measures the
protocol, not the terminal.
"""

import socketserver
import sys

ACK = b"server recv success"
RECV_SIZE = 1024


class AckHandler(socketserver.BaseRequestHandler):
    def handle(self):
        connection = self.request
        while True:
            data = connection.recv(RECV_SIZE)
            if not data:  # recv returned 0 bytes: the client closed
                return
            connection.sendall(ACK)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True  # a stop does not wait for clients still connected


def main():
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(__doc__.strip())
        return
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    with Server(("127.0.0.1", port), AckHandler) as server:
        host, port = server.server_address
        print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
