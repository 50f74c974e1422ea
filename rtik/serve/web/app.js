// rtik view: the live view of `rtik serve` (a WebSocket of poses and figures) and of files (`rtik view`).
// Solved skeletons are drawn as coloured bones, each stream's input positions as orange points beside them, so
// that noise, lag and missing joints show. No build step: ES modules, three.js vendored beside this file.
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/OrbitControls.js';

const PALETTE = [0x6cb6ff, 0x5ad17a, 0xd08cff, 0xffd166, 0x4dd0c4, 0xff8fab, 0xa3be8c, 0x88c0d0,
  0xebcb8b, 0xb48ead, 0x8fbcbb, 0xd8dee9, 0x81a1c1, 0xbf616a, 0xa0e7e5, 0xf4a261];
const INPUT_COLOR = 0xff8c3a;
const SPREAD = 2.0; // m between figures when spread out

// what the tests and the curious read: frames received, figures drawn, the last error
const state = window.rtikView = { mode: null, frames: 0, streams: [], selected: null, errors: [], ready: false };

// ------------------------------------------------------------------------------------------------ the scene
const canvas = document.getElementById('view');
const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(window.devicePixelRatio || 1);
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x15181d);
const camera = new THREE.PerspectiveCamera(45, 1, 0.05, 200);
camera.position.set(2.5, 2.0, 4.5);
const controls = new OrbitControls(camera, canvas);
controls.target.set(0, 0.9, 0);
controls.update();
const grid = new THREE.GridHelper(20, 40, 0x3a4250, 0x262b33);
scene.add(grid);
const labels = document.getElementById('labels');

class Figure {
  // one skeleton: bones as line segments, joints as points, the input positions as points of their own
  constructor(name, bones, joints, color) {
    this.name = name;
    this.bones = bones;
    this.joints = joints;
    this.color = color;
    this.group = new THREE.Group();
    this.boneGeo = new THREE.BufferGeometry();
    this.boneGeo.setAttribute('position', new THREE.BufferAttribute(new Float32Array(bones.length * 6), 3));
    this.lines = new THREE.LineSegments(this.boneGeo, new THREE.LineBasicMaterial({ color }));
    this.jointGeo = new THREE.BufferGeometry();
    this.jointGeo.setAttribute('position', new THREE.BufferAttribute(new Float32Array(joints.length * 3), 3));
    this.points = new THREE.Points(this.jointGeo, new THREE.PointsMaterial({ color, size: 8, sizeAttenuation: false }));
    this.inputGeo = new THREE.BufferGeometry();
    this.inputGeo.setAttribute('position', new THREE.BufferAttribute(new Float32Array(3 * 64), 3));
    this.inputs = new THREE.Points(this.inputGeo,
      new THREE.PointsMaterial({ color: INPUT_COLOR, size: 4, sizeAttenuation: false, depthTest: false }));
    for (const o of [this.lines, this.points, this.inputs]) { o.frustumCulled = false; this.group.add(o); }
    this.inputs.renderOrder = 1; // over the joints: an input point sits on its solved joint when all is well
    this.inputGeo.setDrawRange(0, 0);
    this.label = document.createElement('div');
    this.label.className = 'label';
    this.label.textContent = name;
    this.label.style.color = '#' + color.toString(16).padStart(6, '0');
    labels.appendChild(this.label);
    this.head = new THREE.Vector3();
    this.root = new THREE.Vector3();
    this.seen = false;
    scene.add(this.group);
  }

  setPose(pos, inputs) {
    // pos: Float32Array (J * 3) metres; inputs: Float32Array (I * 3) metres, NaN where missing, or null
    const b = this.boneGeo.attributes.position.array;
    this.bones.forEach(([c, p], k) => {
      b.set(pos.subarray(3 * c, 3 * c + 3), 6 * k);
      b.set(pos.subarray(3 * p, 3 * p + 3), 6 * k + 3);
    });
    this.boneGeo.attributes.position.needsUpdate = true;
    const j = this.jointGeo.attributes.position.array;
    let top = -Infinity;
    this.joints.forEach((i, k) => {
      j.set(pos.subarray(3 * i, 3 * i + 3), 3 * k);
      if (pos[3 * i + 1] > top) { top = pos[3 * i + 1]; this.head.set(pos[3 * i], top, pos[3 * i + 2]); }
    });
    this.jointGeo.attributes.position.needsUpdate = true;
    const r = this.joints[0];
    this.root.set(pos[3 * r], pos[3 * r + 1], pos[3 * r + 2]);
    let n = 0;
    if (inputs) {
      let attr = this.inputGeo.attributes.position;
      if (attr.array.length < inputs.length) {
        attr = new THREE.BufferAttribute(new Float32Array(inputs.length), 3);
        this.inputGeo.setAttribute('position', attr);
      }
      for (let i = 0; i < inputs.length; i += 3) {
        if (Number.isFinite(inputs[i]) && Number.isFinite(inputs[i + 1]) && Number.isFinite(inputs[i + 2])) {
          attr.array[3 * n] = inputs[i]; attr.array[3 * n + 1] = inputs[i + 1]; attr.array[3 * n + 2] = inputs[i + 2];
          n += 1;
        }
      }
      attr.needsUpdate = true;
    }
    this.inputGeo.setDrawRange(0, n);
    this.seen = true;
  }

  dispose() {
    scene.remove(this.group);
    for (const o of [this.lines, this.points, this.inputs]) { o.geometry.dispose(); o.material.dispose(); }
    this.label.remove();
  }
}

const figures = new Map(); // name -> Figure
let colorIndex = 0;
const ui = {
  spread: document.getElementById('spread'), follow: document.getElementById('follow'),
  inputs: document.getElementById('show-inputs'), message: document.getElementById('message'),
};

function figure(name, bones, joints) {
  let f = figures.get(name);
  if (!f) {
    f = new Figure(name, bones, joints, PALETTE[colorIndex++ % PALETTE.length]);
    figures.set(name, f);
    state.streams = [...figures.keys()];
  }
  return f;
}

function dropFigure(name) {
  const f = figures.get(name);
  if (f) { f.dispose(); figures.delete(name); state.streams = [...figures.keys()]; }
}

function layout() {
  // spread out: each figure on its own square of a grid, its root's ground point at the square's centre
  const names = [...figures.keys()].sort();
  const cols = Math.max(1, Math.ceil(Math.sqrt(names.length)));
  names.forEach((name, k) => {
    const f = figures.get(name);
    if (ui.spread.checked) {
      f.group.position.set((k % cols) * SPREAD - f.root.x, 0, Math.floor(k / cols) * SPREAD - f.root.z);
    } else {
      f.group.position.set(f.offset || 0, 0, 0);
    }
    f.inputs.visible = ui.inputs.checked;
  });
}

function frameAll() {
  // point the camera at every figure drawn (once when the first ones arrive, and when the layout changes)
  const box = new THREE.Box3();
  for (const f of figures.values()) if (f.seen) box.expandByPoint(f.root.clone().add(f.group.position));
  if (box.isEmpty()) return false;
  const centre = box.getCenter(new THREE.Vector3());
  const size = Math.max(2.5, box.getSize(new THREE.Vector3()).length());
  centre.y = 0.9;
  controls.target.copy(centre);
  camera.position.copy(centre).add(new THREE.Vector3(0.45, 0.35, 1).multiplyScalar(size * 1.4));
  return true;
}
let framed = false;
ui.spread.addEventListener('change', () => { layout(); frameAll(); });

const tmp = new THREE.Vector3();
function render() {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.floor(w * renderer.getPixelRatio()) || canvas.height !== Math.floor(h * renderer.getPixelRatio())) {
    renderer.setSize(w, h, false);
    camera.aspect = w / Math.max(h, 1);
    camera.updateProjectionMatrix();
  }
  if (state.mode === 'files') playback();
  layout();
  if (!framed) framed = frameAll();
  const sel = state.selected && figures.get(state.selected);
  if (sel && sel.seen && ui.follow.checked) {
    tmp.copy(sel.root).add(sel.group.position);
    tmp.y = 0.9;
    const delta = tmp.clone().sub(controls.target);
    camera.position.add(delta);
    controls.target.copy(tmp);
  }
  controls.update();
  renderer.render(scene, camera);
  for (const f of figures.values()) {
    tmp.copy(f.head).add(f.group.position);
    tmp.y += 0.15;
    tmp.project(camera);
    const visible = f.seen && tmp.z < 1 && Math.abs(tmp.x) < 1.2 && Math.abs(tmp.y) < 1.2;
    f.label.style.display = visible ? '' : 'none';
    f.label.style.left = `${(tmp.x + 1) / 2 * w}px`;
    f.label.style.top = `${(1 - tmp.y) / 2 * h}px`;
    f.label.classList.toggle('selected', f.name === state.selected);
  }
  requestAnimationFrame(render);
}

function select(name) {
  state.selected = state.selected === name ? null : name;
  for (const row of document.querySelectorAll('tr.stream')) row.classList.toggle('selected', row.dataset.name === state.selected);
}

function say(text, bad = false) {
  ui.message.textContent = text;
  ui.message.className = bad ? 'warn' : 'muted';
}

// --------------------------------------------------------------------------------------------------- live
let ws = null, hello = null, nextId = 1;
const pending = new Map();

function send(cmd, args = {}) {
  // a control command, the same as `rtik ctl`; resolves with its reply
  return new Promise((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    ws.send(JSON.stringify({ id, cmd, ...args }));
  });
}

function connect() {
  ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { document.getElementById('conn').className = 'dot on'; };
  ws.onclose = () => {
    document.getElementById('conn').className = 'dot off';
    say('disconnected from the daemon; retrying', true);
    setTimeout(connect, 1000);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== 'string') return onPoses(ev.data);
    const msg = JSON.parse(ev.data);
    if (msg.t === 'hello') { hello = msg; state.ready = true; document.getElementById('mode').textContent = `live · ${msg.model || 'model'}`; say(''); }
    else if (msg.t === 'stats') onStats(msg);
    else if (msg.t === 'recordings') onRecordings(msg.list);
    else if (msg.t === 'reply') { const r = pending.get(msg.id); pending.delete(msg.id); if (r) r(msg); }
  };
}

function onPoses(buf) {
  if (!hello) return;
  const n = new DataView(buf).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  let off = 4 + n + ((4 - ((4 + n) % 4)) % 4);
  for (const s of head.streams) {
    const pos = new Float32Array(buf, off, s.j * 3); off += s.j * 12;
    const inp = new Float32Array(buf, off, s.i * 3); off += s.i * 12;
    figure(s.name, hello.bones, hello.joints).setPose(pos, inp);
  }
  state.frames += 1;
}

const fmt = (v, d = 1) => (v === null || v === undefined ? '–' : Number(v).toFixed(d));
const COLUMNS = [
  ['stream', 'stream'], ['rate', 'Hz'], ['latency', 'p50 / p99 ms'], ['resets', 'resets'],
  ['dropped', 'drop / rej'], ['noise', 'noise mm'], ['missing', 'missing'], ['calib', 'calibration'],
  ['rec', ''],
];

function onStats(msg) {
  const st = msg.status;
  document.getElementById('daemon').innerHTML = '';
  const dl = document.getElementById('daemon');
  const rows = [['model', `${st.model || '–'} (${st.backend})`], ['version', st.version],
    ['uptime', `${fmt(st.uptime_s, 0)} s`], ['streams', `${st.streams}, ${st.recordings} recording`],
    ['frames', `${st.frames_in} in, ${st.frames_out} out, ${st.dropped} dropped, ${st.errors} errors`],
    ['latency', `p50 ${fmt(st.latency_p50_ms, 2)} ms, p99 ${fmt(st.latency_p99_ms, 2)} ms (bucket bounds)`],
    ['viewers', `${st.web.clients} connected, updates at ${st.web.rate} Hz`]];
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    dl.append(dt, dd);
  }
  const thead = document.querySelector('#streams thead');
  if (!thead.children.length) {
    const tr = document.createElement('tr');
    for (const [, title] of COLUMNS) { const th = document.createElement('th'); th.textContent = title; tr.appendChild(th); }
    thead.appendChild(tr);
  }
  const body = document.querySelector('#streams tbody');
  body.innerHTML = '';
  const open = new Set();
  for (const s of msg.streams) {
    open.add(s.stream);
    const f = figure(s.stream, hello ? hello.bones : [], hello ? hello.joints : []);
    const tr = document.createElement('tr');
    tr.className = 'stream' + (s.stream === state.selected ? ' selected' : '');
    tr.dataset.name = s.stream;
    const cal = s.calibration;
    const cells = {
      stream: s.stream, rate: fmt(s.rate_hz, 0), latency: `${fmt(s.latency_p50_ms, 2)} / ${fmt(s.latency_p99_ms, 2)}`,
      resets: s.resets, dropped: `${s.dropped ?? 0} / ${s.rejected}`, noise: fmt(s.noise_mm, 1),
      missing: s.missing, calib: cal ? `${cal.state} ×${fmt(cal.scale, 2)}` : '–',
    };
    const warn = { latency: s.latency_p99_ms > 20, noise: s.noise_mm > 10, missing: s.missing > 0,
      dropped: s.rejected > 0, calib: cal && cal.state !== 'settled' };
    for (const [key] of COLUMNS) {
      const td = document.createElement('td');
      if (key === 'stream') {
        const sw = document.createElement('span');
        sw.className = 'swatch';
        sw.style.background = '#' + f.color.toString(16).padStart(6, '0');
        td.append(sw, document.createTextNode(s.stream));
      } else if (key === 'rec') {
        const b = document.createElement('button');
        b.className = s.recording ? 'rec' : '';
        b.textContent = s.recording ? '■ stop' : '● record';
        b.title = s.recording || 'record this stream to BVH';
        b.dataset.stream = s.stream;
        b.onclick = async (ev) => {
          ev.stopPropagation();
          const r = await send(s.recording ? 'record_stop' : 'record_start', { stream: s.stream });
          say(r.ok ? (s.recording ? `${s.stream}: ${r.result.frames} frames in ${r.result.path}` : `${s.stream}: recording to ${r.result.path}`) : r.error, !r.ok);
        };
        td.appendChild(b);
      } else {
        td.textContent = cells[key];
        if (warn[key]) td.className = 'warn';
      }
      tr.appendChild(td);
    }
    tr.onclick = () => select(s.stream);
    body.appendChild(tr);
  }
  for (const name of [...figures.keys()]) if (!open.has(name)) dropFigure(name);
  document.getElementById('no-streams').hidden = msg.streams.length > 0;
}

function onRecordings(list) {
  const ul = document.getElementById('recordings');
  ul.innerHTML = '';
  for (const r of list) {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = `/recordings/${encodeURIComponent(r.name)}`;
    a.download = r.name;
    a.textContent = r.name;
    const info = document.createElement('span');
    info.className = 'muted';
    info.textContent = `${(r.bytes / 1024).toFixed(0)} KiB${r.active ? ` · recording ${r.stream}` : ''}`;
    li.append(a, info);
    ul.appendChild(li);
  }
  if (!list.length) ul.innerHTML = '<li class="muted">none</li>';
}

// -------------------------------------------------------------------------------------------------- files
const clips = []; // {name, fps, frames, joints, data: Float32Array(F * J * 3), figure}
let playing = true, t0 = performance.now(), frame = 0, last = -1;
const scrub = document.getElementById('scrub');

async function openFiles(info) {
  document.getElementById('mode').textContent = 'files';
  document.getElementById('conn').hidden = true;
  document.querySelector('footer').firstChild.textContent = 'Each file as its own skeleton; an input and its output side by side. ';
  document.getElementById('show-inputs').parentElement.hidden = true;
  document.querySelector('#recordings-section h2').textContent = 'Files';
  document.getElementById('streams-title').textContent = 'Clips';
  document.getElementById('timeline').hidden = false;
  const ul = document.getElementById('recordings');
  info.groups.forEach((name, g) => {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = `?group=${g}`;
    a.textContent = name;
    if (g === info.group) a.className = 'current';
    li.appendChild(a);
    ul.appendChild(li);
  });
  const body = document.querySelector('#streams tbody');
  document.querySelector('#streams thead').innerHTML =
    '<tr><th>clip</th><th>side</th><th>frames</th><th>fps</th><th>joints</th><th>unit</th></tr>';
  let longest = 0, fps = 30;
  for (const [k, c] of info.clips.entries()) {
    const tr = document.createElement('tr');
    tr.className = 'stream';
    tr.dataset.name = c.name;
    if (c.error) {
      tr.innerHTML = '<td></td><td class="warn" colspan="5"></td>';
      tr.children[0].textContent = c.name;
      tr.children[1].textContent = c.error;
      body.appendChild(tr);
      say(c.error, true);
      continue;
    }
    const buf = await (await fetch(`/clip/${k}?group=${info.group}`)).arrayBuffer();
    const key = c.side ? `${c.name} · ${c.side}` : c.name; // an input and its output may share a file name
    const f = figure(key, c.bones, c.joints);
    tr.dataset.name = key;
    f.offset = c.offset;
    clips.push({ ...c, data: new Float32Array(buf), figure: f });
    if (c.frames > longest) { longest = c.frames; fps = c.fps; }
    for (const v of [c.name, c.side || '–', c.frames, fmt(c.fps, 1), c.names.length, c.unit]) {
      const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
    }
    tr.onclick = () => select(key);
    body.appendChild(tr);
  }
  document.getElementById('no-streams').hidden = clips.length > 0;
  scrub.max = Math.max(0, longest - 1);
  state.fps = fps;
  state.ready = true;
  const play = document.getElementById('play');
  play.textContent = 'pause';
  play.onclick = () => {
    playing = !playing;
    play.textContent = playing ? 'pause' : 'play';
    t0 = performance.now() - frame / fps * 1000;
  };
  scrub.oninput = () => { playing = false; play.textContent = 'play'; frame = Number(scrub.value); };
}

function playback() {
  if (!clips.length) return;
  const longest = Number(scrub.max) + 1;
  if (playing) frame = Math.floor((performance.now() - t0) / 1000 * state.fps) % longest;
  if (frame === last) return;
  last = frame;
  scrub.value = frame;
  document.getElementById('frame').textContent = `${frame + 1} / ${longest}`;
  for (const c of clips) {
    const i = Math.min(frame, c.frames - 1), n = c.names.length * 3;
    c.figure.setPose(c.data.subarray(i * n, (i + 1) * n), null);
  }
  state.frames += 1;
}

// ---------------------------------------------------------------------------------------------------- start
window.addEventListener('error', (e) => state.errors.push(String(e.message)));
ui.spread.checked = new URLSearchParams(location.search).has('spread');
const info = await (await fetch('/api/info' + location.search)).json();
state.mode = info.mode;
if (info.mode === 'files') await openFiles(info); else connect();
requestAnimationFrame(render);
