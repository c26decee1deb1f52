#!/usr/bin/env python3
"""The wire timeline of each viewer join of `browser_first_frame`, from a capture.py file
and the test's output (which prints each join's POST time on the page's wall clock), in ms
after the page's WHEP POST: the POST and the 201 on the wire, the viewer's first ICE check
and our answer to it, the first DTLS ClientHello and the last ChangeCipherSpec flight, the
first video packet to the viewer and how many went out within 5 ms of it (and over how long),
the keyframe request to the publisher; then the page's figures (answer, ICE, DTLS, loadeddata,
the browser's receiveTime of the frame shown first, frames decoded then, frame shown)."""
import re, sys
cap = [l.rstrip('\n').split(' ', 5) for l in open(sys.argv[1], errors='replace') if ' U ' in l or ' T ' in l]
rows = []
for l in cap:
    try: rows.append((float(l[0]), l[1], int(l[2]), int(l[3]), ' '.join(l[4:])))
    except Exception: pass
log = open(sys.argv[2], errors='replace').read()
joins = []
for m in re.finditer(r'(sansrtc|str0m) (\w+) viewer[^:]*: Join \{ answer: ([\d.]+), ice_connected: ([\d.NaN]+), dtls_connected: ([\d.NaN]+), video_loaded: ([\d.NaN]+), shown: ([\d.NaN]+), shown_frame_received: ([\d.NaN]+), decoded_at_shown: ([\d.NaN]+),(?: playout_delay_negotiated: \w+,)? post_unix_ms: ([\d.]+)', log):
    g = m.groups()
    joins.append((g[0], g[1], g[9], g[2], g[3], g[4], g[5], g[7], g[8], g[6]))
print('%-16s %5s %5s %5s %5s %6s %6s %6s %6s %5s %5s | page: %5s %5s %5s %6s %5s %4s %5s' % ('join', 'POST', '201', 'chk', 'resp', 'hs1', 'dtlsOK', 'rtp1', 'burstN', 'bms', 'pli', 'ans', 'ICE', 'DTLS', 'loaded', 'shnRx', 'dec#', 'shown'))
for j in joins:
    stack, kind, post = j[0], j[1], float(j[2]) / 1000
    win = [r for r in rows if post - 0.005 <= r[0] <= post + 2.0]
    seen_before = {r[2] for r in rows if post - 3 <= r[0] < post - 0.005} | {r[3] for r in rows if post - 3 <= r[0] < post - 0.005}
    ms = lambda t: (t - post) * 1000 if t else float('nan')
    wpost = next((r[0] for r in win if r[1] == 'T' and 'POST /whep' in r[4]), None)
    w201 = next((r[0] for r in win if r[1] == 'T' and '201 Created' in r[4]), None)
    chk = next((r for r in win if r[1] == 'U' and r[4].startswith('STUN 0001') and r[2] not in seen_before), None)
    if not chk:
        print(stack, kind, 'no check'); continue
    viewer, server = chk[2], chk[3]
    resp = next((r[0] for r in win if r[2] == server and r[3] == viewer and r[4].startswith('STUN 0101')), None)
    hs1 = next((r[0] for r in win if r[4].startswith('DTLS hs1') and {r[2], r[3]} == {viewer, server}), None)
    dtls = [r for r in win if r[4].startswith('DTLS') and {r[2], r[3]} == {viewer, server} and 'ct20' in r[4]]
    dtls_ok = dtls[-1][0] if dtls else None
    rtp = [r for r in win if r[2] == server and r[3] == viewer and r[4].startswith('RTP') and int(r[4].split('len')[1]) > 400]
    rtp1 = rtp[0][0] if rtp else None
    burst = [r for r in rtp if r[0] - rtp1 < 0.005] if rtp else []
    pli = next((r[0] for r in win if 'RTCP pt206' in r[4] and r[2] == server), None)
    page = [float(x) if x != 'NaN' else float('nan') for x in j[3:]]
    print('%-16s %5.1f %5.1f %5.1f %5.1f %6.1f %6.1f %6.1f %6d %5.1f %5.1f | page: %5.0f %5.0f %5.0f %6.0f %5.0f %4.0f %5.0f' % (
        stack + ' ' + kind, ms(wpost), ms(w201), ms(chk[0]), ms(resp), ms(hs1), ms(dtls_ok), ms(rtp1), len(burst),
        (burst[-1][0] - burst[0][0]) * 1000 if burst else 0, ms(pli), page[0], page[1], page[2], page[3], page[4], page[5], page[6]))
