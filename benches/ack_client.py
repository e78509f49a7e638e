"""The walkthrough's client.py: connect, send each line typed, print the ack, `q` to quit.

    python3 benches/ack_client.py PORT

compare.sh times a whole session with hyperfine (start, connect, one message, `q`) against
`socket-lab client`. Like client.py, it reads the ack with one recv(1024).
"""

import socket
import sys


def main():
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(__doc__.strip())
        return
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect(("127.0.0.1", port))
    for line in sys.stdin:
        message = line.rstrip("\r\n")
        if message == "q":
            break
        client.send(message.encode())
        print(client.recv(1024).decode(errors="replace"))
    client.close()


if __name__ == "__main__":
    main()
