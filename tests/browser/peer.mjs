// A browser RTCPeerConnection remote-controlled over JSON lines (stdin: commands,
// stdout: responses and events). Used by the Rust interop tests through
// tests/src/browser.rs. Serves a blank page on 127.0.0.1 (getUserMedia needs a secure
// context, which http://127.0.0.1 is), launches headless Chromium (playwright-core) or
// Firefox ESR (puppeteer-core over WebDriver BiDi), and exits on stdin EOF.
//
//   node peer.mjs --browser chromium|firefox
//
// Commands: {"id":1,"cmd":"create","config":{...}} -> {"id":1,"ok":true,"result":...}
//           {"cmd":"goto","url":...} opens another page (an example's); {"cmd":"eval","js":...} runs in the current one
// Events:   {"event":"icecandidate","candidate":{...}|null}, {"event":"iceconnectionstatechange","state":"connected"}, ...
import http from 'node:http';
import readline from 'node:readline';

const argv = process.argv.slice(2);
const kind = argv.includes('--browser') ? argv[argv.indexOf('--browser') + 1] : 'chromium';
// Extra Chromium switches a test asks for (`--chromium-arg SWITCH`, repeatable).
const extraChromiumArgs = argv.flatMap((a, i) => (a === '--chromium-arg' && argv[i + 1] ? [argv[i + 1]] : []));

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];
const FIREFOX_PREFS = {
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
};

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><meta charset="utf-8"><title>sansrtc test page</title><body></body>');
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}/`;

let browser;
let page;
async function launch() {
  if (kind === 'firefox') {
    const puppeteer = (await import('puppeteer-core')).default;
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: process.env.FIREFOX_BIN || '/usr/bin/firefox-esr',
      headless: true,
      extraPrefsFirefox: FIREFOX_PREFS,
    });
    page = await browser.newPage();
  } else {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
      headless: true,
      args: [...CHROMIUM_ARGS, ...extraChromiumArgs],
    });
    const context = await browser.newContext();
    page = await context.newPage();
  }
  await page.goto(url);
  await page.evaluate(() => {
    window.__events = [];
    window.__channels = {};
  });
}

// Browser launch is retried: a cold start under load occasionally times out.
let lastError;
for (let attempt = 0; attempt < 3 && !page; attempt++) {
  try {
    await launch();
  } catch (e) {
    lastError = e;
    if (browser) await browser.close().catch(() => {});
    browser = undefined;
    page = undefined;
  }
}
if (!page) {
  process.stderr.write(`browser launch failed: ${lastError && lastError.stack}\n`);
  process.exit(2);
}

// Page-side implementation of every command; runs inside the browser.
async function pageCommand({ cmd, args }) {
  const push = (e) => window.__events.push(e);
  const pc = window.pc;
  const wireChannel = (dc) => {
    window.__channels[dc.label] = dc;
    dc.binaryType = 'arraybuffer';
    dc.onopen = () => push({ event: 'datachannelopen', label: dc.label });
    dc.onclose = () => push({ event: 'datachannelclose', label: dc.label });
    dc.onmessage = (m) => push({
      event: 'message', label: dc.label,
      binary: typeof m.data !== 'string',
      data: typeof m.data === 'string' ? m.data : Array.from(new Uint8Array(m.data)),
    });
  };
  switch (cmd) {
    case 'create': {
      const p = new RTCPeerConnection(args.config || {});
      window.pc = p;
      p.onicecandidate = (e) => push({ event: 'icecandidate', candidate: e.candidate ? e.candidate.toJSON() : null });
      p.oniceconnectionstatechange = () => push({ event: 'iceconnectionstatechange', state: p.iceConnectionState });
      p.onconnectionstatechange = () => push({ event: 'connectionstatechange', state: p.connectionState });
      p.onsignalingstatechange = () => push({ event: 'signalingstatechange', state: p.signalingState });
      p.onicegatheringstatechange = () => push({ event: 'icegatheringstatechange', state: p.iceGatheringState });
      p.onicecandidateerror = (e) => push({ event: 'icecandidateerror', url: e.url, errorCode: e.errorCode, errorText: e.errorText });
      p.ontrack = (e) => push({ event: 'track', kind: e.track.kind, mid: e.transceiver && e.transceiver.mid });
      p.ondatachannel = (e) => { wireChannel(e.channel); push({ event: 'datachannel', label: e.channel.label }); };
      return true;
    }
    case 'getUserMedia': {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: !!args.audio, video: !!args.video });
      for (const t of stream.getTracks()) pc.addTrack(t, stream);
      return stream.getTracks().map((t) => t.kind);
    }
    case 'addTransceiver': {
      const t = pc.addTransceiver(args.kind, { direction: args.direction || 'sendrecv', sendEncodings: args.sendEncodings });
      return { mid: t.mid };
    }
    case 'createDataChannel': {
      const dc = pc.createDataChannel(args.label, args.options || {});
      wireChannel(dc);
      return { label: dc.label, id: dc.id };
    }
    case 'send': {
      const dc = window.__channels[args.label];
      dc.send(args.binary ? new Uint8Array(args.data) : args.data);
      return true;
    }
    case 'createOffer': {
      const o = await pc.createOffer(args.options || {});
      return { type: o.type, sdp: o.sdp };
    }
    case 'createAnswer': {
      const a = await pc.createAnswer();
      return { type: a.type, sdp: a.sdp };
    }
    case 'setLocalDescription':
      await (args.desc ? pc.setLocalDescription(args.desc) : pc.setLocalDescription());
      return { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
    case 'setRemoteDescription':
      await pc.setRemoteDescription(args.desc);
      return true;
    case 'addIceCandidate':
      await (args.candidate ? pc.addIceCandidate(args.candidate) : pc.addIceCandidate());
      return true;
    case 'getStats': {
      const report = await pc.getStats();
      return [...report.values()].map((s) => JSON.parse(JSON.stringify(s)));
    }
    case 'state':
      return {
        signalingState: pc.signalingState,
        iceConnectionState: pc.iceConnectionState,
        connectionState: pc.connectionState,
        iceGatheringState: pc.iceGatheringState,
      };
    case 'localDescription':
      return pc.localDescription && { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
    case 'waitFor': {
      const end = Date.now() + (args.timeoutMs || 30000);
      while (Date.now() < end) {
        if (pc[args.field] === args.value) return true;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`${args.field} is ${pc[args.field]}, wanted ${args.value}`);
    }
    case 'eval': {
      const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;
      return await new AsyncFunction('pc', args.js)(pc);
    }
    default:
      throw new Error(`unknown command ${cmd}`);
  }
}

async function handle(msg) {
  const { id, cmd } = msg;
  if (cmd === 'ping') return out({ id, ok: true, result: { browser: kind, version: browser.version ? await browser.version() : '' } });
  if (cmd === 'close') return shutdown();
  if (cmd === 'goto') {
    // Open a page of the server under test (the examples' pages); `eval` then runs in it.
    try {
      await page.goto(msg.url);
      await page.evaluate(() => { window.__events = window.__events || []; window.__channels = {}; });
      return out({ id, ok: true, result: true });
    } catch (e) {
      return out({ id, ok: false, error: String(e && e.message ? e.message : e) });
    }
  }
  try {
    const args = { ...msg };
    delete args.id;
    delete args.cmd;
    const result = await page.evaluate(pageCommand, { cmd, args });
    out({ id, ok: true, result: result === undefined ? null : result });
  } catch (e) {
    out({ id, ok: false, error: String(e && e.message ? e.message : e) });
  }
}

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  clearInterval(poller);
  await browser.close().catch(() => {});
  server.close();
  process.exit(0);
}

// Events are drained from the page every 20 ms.
let polling = false;
const poller = setInterval(async () => {
  if (polling || closing) return;
  polling = true;
  try {
    const events = await page.evaluate(() => window.__events.splice(0));
    for (const e of events) out(e);
  } catch (_) {
    // The page may be navigating or closing.
  } finally {
    polling = false;
  }
}, 20);

// Commands run one at a time, in order.
let chain = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    out({ id: null, ok: false, error: `bad JSON: ${e.message}` });
    return;
  }
  chain = chain.then(() => handle(msg));
});
rl.on('close', () => { chain.then(shutdown); });
