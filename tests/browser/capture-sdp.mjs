// Captures real SDP offers and answers from Chromium and Firefox into
// core/tests/fixtures/sdp/<browser>-<case>-<offer|answer>.sdp for the SDP corpus test.
// Run inside a loopback-only namespace:
//   unshare -n sh -c 'ip link set lo up; node tests/browser/capture-sdp.mjs'
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = path.join(here, '..', '..', 'core', 'tests', 'fixtures', 'sdp');
fs.mkdirSync(outDir, { recursive: true });

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>capture</title>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/`;

// Runs in the page: every case returns a list of [name, sdp].
async function captureAll() {
  const out = [];
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  const [audio] = stream.getAudioTracks();
  const [video] = stream.getVideoTracks();
  async function pair(setup, opts = {}) {
    const a = new RTCPeerConnection();
    const b = new RTCPeerConnection();
    a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate).catch(() => {});
    b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate).catch(() => {});
    await setup(a, b);
    const offer = await a.createOffer(opts.offerOptions || {});
    await a.setLocalDescription(offer);
    await b.setRemoteDescription(offer);
    const answer = await b.createAnswer();
    await b.setLocalDescription(answer);
    await a.setRemoteDescription(answer);
    return { a, b, offer, answer };
  }
  async function gathered(pc) {
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((r) => {
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
        setTimeout(r, 5000);
      });
    }
    return pc.localDescription.sdp;
  }
  const record = (name, { offer, answer }) => {
    out.push([`${name}-offer`, offer.sdp]);
    out.push([`${name}-answer`, answer.sdp]);
  };

  let s = await pair(async (a) => { a.addTrack(audio, stream); a.addTrack(video, stream); });
  record('audio-video', s);
  s.a.close(); s.b.close();

  s = await pair(async (a) => { a.addTrack(audio, stream); });
  record('audio-only', s);
  s.a.close(); s.b.close();

  s = await pair(async (a) => { a.addTransceiver('video', { direction: 'recvonly' }); });
  record('video-recvonly', s);
  s.a.close(); s.b.close();

  s = await pair(async (a) => { a.createDataChannel('chat'); });
  record('datachannel', s);
  s.a.close(); s.b.close();

  s = await pair(async (a) => { a.addTrack(audio, stream); a.addTrack(video, stream); a.createDataChannel('chat'); });
  record('audio-video-datachannel', s);
  // Renegotiation: add a second video track, then remove it (the m-line is kept, inactive/recvonly).
  const extra = video.clone();
  const sender = s.a.addTrack(extra, stream);
  let offer = await s.a.createOffer();
  await s.a.setLocalDescription(offer);
  await s.b.setRemoteDescription(offer);
  let answer = await s.b.createAnswer();
  await s.b.setLocalDescription(answer);
  await s.a.setRemoteDescription(answer);
  record('renegotiation-add-track', { offer, answer });
  s.a.removeTrack(sender);
  offer = await s.a.createOffer();
  await s.a.setLocalDescription(offer);
  await s.b.setRemoteDescription(offer);
  answer = await s.b.createAnswer();
  await s.b.setLocalDescription(answer);
  await s.a.setRemoteDescription(answer);
  record('renegotiation-remove-track', { offer, answer });
  // Stop a transceiver: its m-line is rejected (port 0) in the next offer.
  const tr = s.a.getTransceivers().find((t) => t.sender === sender);
  if (tr && tr.stop) {
    tr.stop();
    offer = await s.a.createOffer();
    await s.a.setLocalDescription(offer);
    await s.b.setRemoteDescription(offer);
    answer = await s.b.createAnswer();
    await s.b.setLocalDescription(answer);
    await s.a.setRemoteDescription(answer);
    record('renegotiation-stopped', { offer, answer });
  }
  // ICE restart.
  offer = await s.a.createOffer({ iceRestart: true });
  await s.a.setLocalDescription(offer);
  await s.b.setRemoteDescription(offer);
  answer = await s.b.createAnswer();
  await s.b.setLocalDescription(answer);
  await s.a.setRemoteDescription(answer);
  record('ice-restart', { offer, answer });
  s.a.close(); s.b.close();

  // Simulcast with three rids.
  try {
    s = await pair(async (a) => {
      a.addTransceiver(video, {
        direction: 'sendonly',
        streams: [stream],
        sendEncodings: [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }],
      });
    });
    record('simulcast', s);
    s.a.close(); s.b.close();
  } catch (e) {
    out.push(['simulcast-error', String(e)]);
  }

  // An offer and answer with every gathered candidate inside (non-trickle).
  s = await pair(async (a) => { a.addTrack(audio, stream); a.createDataChannel('x'); });
  const fullOffer = await gathered(s.a);
  const fullAnswer = await gathered(s.b);
  out.push(['gathered-offer', fullOffer]);
  out.push(['gathered-answer', fullAnswer]);
  s.a.close(); s.b.close();
  return out;
}

async function withChromium() {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
  const page = await (await browser.newContext()).newPage();
  await page.goto(url);
  const result = await page.evaluate(captureAll);
  await browser.close();
  return result;
}

async function withFirefox() {
  const puppeteer = (await import('puppeteer-core')).default;
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: '/usr/bin/firefox-esr',
    headless: true,
    extraPrefsFirefox: {
      'permissions.default.camera': 1, 'permissions.default.microphone': 1,
      'media.navigator.streams.fake': true, 'media.navigator.permission.disabled': true,
      'media.peerconnection.ice.loopback': true, 'media.peerconnection.ice.obfuscate_host_addresses': false,
    },
  });
  const page = await browser.newPage();
  await page.goto(url);
  const result = await page.evaluate(captureAll);
  await browser.close();
  return result;
}

for (const [name, run] of [['chromium', withChromium], ['firefox', withFirefox]]) {
  const result = await run();
  for (const [file, sdp] of result) {
    if (file.endsWith('-error')) {
      console.error(`${name}: ${file}: ${sdp}`);
      continue;
    }
    fs.writeFileSync(path.join(outDir, `${name}-${file}.sdp`), sdp);
  }
  console.error(`${name}: ${result.length} descriptions`);
}
server.close();
