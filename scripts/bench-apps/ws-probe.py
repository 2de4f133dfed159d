#!/usr/bin/env python3
"""A WebSocket client for bench-deploy.sh: stays connected across a redeploy and says what
it lost and how the connection ended. Standard library only, so the end is seen as it is on
the wire: a close frame (with its code), EOF (the TCP connection closed with no close frame)
or an error (reset, timeout).

Usage: ws-probe.py PORT HOST READY_FILE RESULT_FILE [MAX_SECONDS]

Connects to 127.0.0.1:PORT with `Host: HOST`, sends a numbered text message every 50 ms and
expects each echoed back; "lost" counts those never echoed, "in_flight" those of them sent
after the last echo arrived (in flight when the connection ended). READY_FILE is created once the first echo arrived (the bench then
starts the redeploy). The probe ends when the connection does, or after MAX_SECONDS
(default 90) with the connection still open; it then connects once more to check the new
release answers. RESULT_FILE gets one JSON object.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

INTERVAL = 0.05
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def handshake(port, host, timeout=5):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("EOF during the handshake")
        head += chunk
    head, rest = head.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if " 101 " not in lines[0] + " ":
        raise ConnectionError(f"handshake refused: {lines[0]}")
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    if not any(l.lower().startswith("sec-websocket-accept:") and l.split(":", 1)[1].strip() == accept for l in lines):
        raise ConnectionError("wrong Sec-WebSocket-Accept")
    sock.settimeout(None)
    return sock, bytearray(rest)


def frame(opcode, payload):
    """A client frame: always masked (RFC 6455 5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Reader:
    """Frames from the socket; a frame is taken from the buffer only once it is whole, so a
    recv timeout between its parts loses nothing."""

    def __init__(self, sock, buffered):
        self.sock, self.buf = sock, buffered

    def parse(self):
        """The payload of the first frame in the buffer (taken out), or None if incomplete."""
        b = self.buf
        if len(b) < 2:
            return None
        n, at = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            (n,), at = struct.unpack("!H", b[2:4]), 4
        elif n == 127:
            if len(b) < 10:
                return None
            (n,), at = struct.unpack("!Q", b[2:10]), 10
        mask = None
        if b[1] & 0x80:
            mask, at = bytes(b[at:at + 4]), at + 4
        if len(b) < at + n:
            return None
        payload = bytes(b[at:at + n])
        del self.buf[:at + n]
        if mask:
            payload = bytes(x ^ mask[i % 4] for i, x in enumerate(payload))
        return payload

    def frame(self):
        while True:
            if len(self.buf) >= 2:
                opcode = self.buf[0] & 0x0F
                parsed = self.parse()
                if parsed is not None:
                    return opcode, parsed
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk


def main():
    port, host, ready_file, result_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    max_seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 90.0
    result = {"sent": 0, "echoed": 0, "lost": 0, "in_flight": 0, "end": "", "ended_at": None, "max_rtt_ms": 0.0}
    last_echo = 0.0
    sock, rest = handshake(port, host)
    result["connected_at"] = time.time()
    lock = threading.Lock()
    sent_at = {}
    done = threading.Event()

    def send_loop():
        seq = 0
        while not done.is_set():
            seq += 1
            try:
                with lock:
                    sock.sendall(frame(0x1, str(seq).encode()))
                    sent_at[seq] = time.monotonic()
                    result["sent"] = seq
            except OSError:
                return  # the reader sees the end too and names it
            done.wait(INTERVAL)

    threading.Thread(target=send_loop, daemon=True).start()
    reader = Reader(sock, rest)
    deadline = time.monotonic() + max_seconds
    sock.settimeout(1.0)
    while True:
        try:
            opcode, payload = reader.frame()
        except socket.timeout:
            if time.monotonic() > deadline:
                result["end"] = f"still open after {max_seconds:.0f}s"
                break
            continue
        except EOFError:
            result["end"] = "EOF (no close frame)"
            break
        except OSError as e:
            result["end"] = f"error: {e.strerror or e}"
            break
        if opcode == 0x1:
            seq = int(payload)
            with lock:
                t = sent_at.pop(seq, None)
            if t is not None:
                last_echo = time.monotonic()
                result["echoed"] += 1
                result["max_rtt_ms"] = max(result["max_rtt_ms"], (last_echo - t) * 1000)
                if result["echoed"] == 1:
                    open(ready_file, "w").close()
        elif opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            reason = payload[2:].decode(errors="replace")
            result["end"] = f"close frame {code} {reason!r}".rstrip() if code else "close frame"
            try:
                with lock:
                    sock.sendall(frame(0x8, payload[:2]))
            except OSError:
                pass
            break
        elif opcode == 0x9:
            with lock:
                sock.sendall(frame(0xA, payload))
    result["ended_at"] = time.time()
    done.set()
    with lock:
        # Sent before the end, never echoed. Echoes come back in order on one connection, so
        # those sent after the last echo arrived were in flight when the connection ended
        # (e.g. crossing the app's close frame); any other would have been dropped.
        result["lost"] = len(sent_at)
        result["in_flight"] = sum(t > last_echo for t in sent_at.values())
    sock.close()

    # Does the app answer WebSocket again (the new release)?
    started = time.monotonic()
    result["reconnect"] = "no answer within 10s"
    while time.monotonic() - started < 10:
        try:
            sock, rest = handshake(port, host, timeout=2)
            sock.settimeout(2)
            sock.sendall(frame(0x1, b"again"))
            opcode, payload = Reader(sock, rest).frame()
            sock.close()
            if opcode == 0x1 and payload == b"again":
                result["reconnect"] = f"echoed after {time.monotonic() - started:.2f}s"
                break
        except (OSError, EOFError, ValueError) as e:
            result["reconnect"] = f"failed: {e}"
        time.sleep(0.1)
    with open(result_file, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
