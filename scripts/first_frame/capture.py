#!/usr/bin/env python3
"""Capture loopback IPv4 UDP and TCP in this network namespace, one line per packet (the
incoming copy only): wall-clock time, U(DP) or T(CP), source and destination ports, and what
the datagram is (STUN type and USE-CANDIDATE, DTLS records and handshake types, RTP payload
type, marker, sequence number, timestamp, SSRC and length, RTCP packet type), or the first
line of a TCP payload; and the namespace's UDP counters (/proc/net/snmp) when they change.

Usage (as root, inside the test's namespace, next to the test):
  unshare -n sh -c 'ip link set lo up; python3 scripts/first_frame/capture.py cap.txt 400 &
    cargo test --offline -p sansrtc-examples --test browser_first_frame -- --nocapture 2>&1 | tee run.log'
then `python3 scripts/first_frame/timeline.py cap.txt run.log`.
"""
import socket, struct, sys, time
out = open(sys.argv[1], 'w', buffering=1)
limit = float(sys.argv[2]) if len(sys.argv) > 2 else 300
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(('lo', 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
# SO_TIMESTAMPNS for kernel timestamps
SO_TIMESTAMPNS = 35
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
end = time.time() + limit
def stun(p):
    t = struct.unpack('!H', p[0:2])[0]
    attrs = []
    i = 20
    while i + 4 <= len(p):
        at, al = struct.unpack('!HH', p[i:i+4])
        attrs.append(at)
        i += 4 + ((al + 3) & ~3)
    uc = 'UC' if 0x0025 in attrs else ''
    return 'STUN %04x %s' % (t, uc)
def dtls(p):
    parts = []
    i = 0
    while i + 13 <= len(p):
        ct = p[i]; epoch = struct.unpack('!H', p[i+3:i+5])[0]
        ln = struct.unpack('!H', p[i+11:i+13])[0]
        if ct == 22 and epoch == 0 and i + 14 <= len(p):
            parts.append('hs%d' % p[i+13])
        else:
            parts.append('ct%d/e%d/%d' % (ct, epoch, ln))
        i += 13 + ln
    return 'DTLS ' + ','.join(parts)
def rtp(p):
    b1 = p[1]
    if 192 <= b1 <= 223:
        return 'RTCP pt%d len%d' % (b1, len(p))
    seq, ts, ssrc = struct.unpack('!HII', p[2:12])
    return 'RTP pt%d m%d seq%d ts%d ssrc%x len%d' % (b1 & 0x7f, b1 >> 7, seq, ts, ssrc, len(p))
last_snmp = None
last_check = 0
def snmp():
    global last_snmp
    lines = [l for l in open('/proc/net/snmp') if l.startswith('Udp:')]
    v = lines[1].strip()
    if v != last_snmp:
        out.write('%.6f SNMP %s | %s\n' % (time.time(), lines[0].strip(), v))
        last_snmp = v
while time.time() < end:
    if time.time() - last_check > 0.05:
        snmp(); last_check = time.time()
    s.settimeout(0.05)
    try:
        data, anc, flags, addr = s.recvmsg(65600, 64)
    except socket.timeout:
        continue
    if addr[2] == 4:  # PACKET_OUTGOING: the loopback copy we see twice
        continue
    ts = time.time()
    for lvl, typ, d in anc:
        if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, ns = struct.unpack('qq', d[:16]); ts = sec + ns / 1e9
    ip = data[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4:
        continue
    ihl = (ip[0] & 15) * 4
    proto = ip[9]
    l4 = ip[ihl:]
    if proto == 17:
        sp, dp, ln = struct.unpack('!HHH', l4[0:6])
        p = l4[8:]
        if not p: continue
        f = p[0]
        if f <= 3: what = stun(p)
        elif 20 <= f <= 63: what = dtls(p)
        elif 128 <= f <= 191: what = rtp(p)
        else: what = 'UDP? %d' % f
        out.write('%.6f U %d %d %s\n' % (ts, sp, dp, what))
    elif proto == 6:
        sp, dp = struct.unpack('!HH', l4[0:4])
        off = (l4[12] >> 4) * 4
        p = l4[off:]
        if not p: continue
        head = p[:40].split(b'\r\n')[0].decode('latin1', 'replace')
        out.write('%.6f T %d %d %d %s\n' % (ts, sp, dp, len(p), head))
