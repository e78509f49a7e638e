"""A server with the bug of a first attempt: no loop around recv, so each connection gets
one ack and is closed.

    python3 tests/peers/one_message_per_connection.py PORT

Each client is served on a thread of its own, so only the missing loop shows.
"""

import socket
import sys
import threading

ACK = b"server recv success"


def serve(connection):
    connection.recv(1024)
    connection.send(ACK)
    connection.close()


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 10000))
server.listen(5)
print("listening on %s:%d" % server.getsockname(), file=sys.stderr, flush=True)
while True:
    connection, address = server.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
