"""The walkthrough's server.py as its reader writes it: one client at a time.

    python3 tests/peers/one_at_a_time.py PORT      # 0 picks a free port

accept, then recv(1024) and answer each message until the client closes, then the next
accept. While one client is connected, the next one's connect succeeds (the kernel completes
the handshake and queues it) but its messages wait. The first line on stderr is
"listening on 127.0.0.1:PORT", as socket-lab prints it.
"""

import socket
import sys

ACK = b"server recv success"

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 10000))
server.listen(5)
print("listening on %s:%d" % server.getsockname(), file=sys.stderr, flush=True)
while True:
    connection, address = server.accept()
    # One careful step beyond the walkthrough: a client that vanishes mid-conversation makes
    # send or recv raise; that client is done, and the server goes on to the next.
    try:
        while True:
            data = connection.recv(1024)
            if not data:
                break
            connection.send(ACK)
    except (ConnectionResetError, BrokenPipeError):
        pass
    connection.close()
