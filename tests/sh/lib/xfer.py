# An exact-byte TCP transfer for the end-to-end tests: "recv PORT" accepts one connection, reads
# to its end and answers "<bytes> <sha256>"; "send HOST PORT SIZE" sends SIZE random bytes and
# exits 0 only when the receiver read exactly them (iperf3 stops counting at the end of a test).
# "send HOST PORT SIZE SECONDS" spreads them over that long in 100 pieces (a connection that
# lives through an event, e.g. a NAT rebinding).
import hashlib, os, socket, sys, time
if sys.argv[1] == "recv":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(1); s.settimeout(20)
    print("listening", flush=True)
    c, _ = s.accept(); c.settimeout(20)
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(65536)
        if not b: break
        h.update(b); n += len(b)
    c.sendall(("%d %s\n" % (n, h.hexdigest())).encode()); c.close()
    print("received", n)
else:
    size = int(sys.argv[4]); data = os.urandom(size)
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=20)
    t = time.monotonic()
    if len(sys.argv) > 5:
        step = -(-size // 100)
        for i in range(0, size, step):
            c.sendall(data[i:i + step]); time.sleep(float(sys.argv[5]) / 100)
    else:
        c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    got = c.makefile().readline().split()
    t = time.monotonic() - t
    ok = got == [str(size), hashlib.sha256(data).hexdigest()]
    print("sent %d bytes in %.2f s (%.0f Mbit/s); the receiver read %s bytes, %s" % (size, t, size * 8 / t / 1e6,
          got[0] if got else "no", "the same bytes" if ok else "NOT the bytes sent"))
    sys.exit(0 if ok else 1)
