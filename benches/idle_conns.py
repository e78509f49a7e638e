"""Holds N idle HTTP keep-alive connections open: each sends one GET, reads the whole
response, then sits silent until stdin closes or SECONDS pass.

    python3 benches/idle_conns.py HOST PORT N SECONDS

Prints "holding N" once every connection has had its answer, so a script can start the
real load only then. A server that caps its connections below N never lets this line out:
the connections beyond the cap wait in the listen queue, which is the starvation compare.sh
measures.
"""

import socket
import sys
import time


def fetch_once(sock, host):
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk


def main():
    host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    deadline = time.monotonic() + seconds
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=seconds)
        fetch_once(sock, host)
        held.append(sock)
    print(f"holding {len(held)}", flush=True)
    time.sleep(max(0.0, deadline - time.monotonic()))
    for sock in held:
        sock.close()


if __name__ == "__main__":
    main()
