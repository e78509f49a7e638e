"""Holds N idle connections open, then checks every one is still served.

    python3 benches/idle_conns.py HOST PORT N SECONDS [http|ack]

Each connection asks once (http: a GET of /, read to the end of the response; ack: the
message "hello", read the 19-byte ack) and then sits silent. Prints "holding N" once every
connection has had its answer, so a script can start the real load only then, and holds them
for SECONDS. Then it asks once more on every connection and prints "served again K of N":
a server that dropped idle connections, or starves them, shows it here. A server that caps
its connections below N never lets "holding" out: the connections beyond the cap wait in the
listen queue, which is the starvation compare.sh measures.

Every connection is a descriptor here too, so the soft limit is raised to the hard one first.
"""

import resource
import socket
import sys
import time


def ask_http(sock, host):
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


def ask_ack(sock, _host):
    sock.sendall(b"hello")
    received = b""
    while len(received) < len(b"server recv success"):
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError("closed before the ack")
        received += chunk


def main():
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(__doc__.strip())
        return
    if len(sys.argv) not in (5, 6):
        sys.exit("usage: idle_conns.py HOST PORT N SECONDS [http|ack]")
    host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    ask = {"http": ask_http, "ack": ask_ack}[sys.argv[5] if len(sys.argv) == 6 else "http"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=30)
        ask(sock, host)
        held.append(sock)
    print(f"holding {len(held)}", flush=True)
    time.sleep(seconds)
    served = 0
    for sock in held:
        try:
            ask(sock, host)
            served += 1
        except OSError:
            pass
    print(f"served again {served} of {len(held)}", flush=True)
    for sock in held:
        sock.close()


if __name__ == "__main__":
    main()
