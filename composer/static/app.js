// The page of `composer serve`: settings from /api/styles and /api/samplers, jobs posted to /api/jobs and
// polled until done, results drawn (piano roll), shown (text, drawing), played (WAV) and offered as files.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 400;
const PALETTE = ["#d1495b", "#2e86ab", "#e0a030", "#3b8f5a", "#8e5ea2", "#f18f01", "#00798c", "#6c757d"];
// What the page knows of the built-in encoders' requests, for a helpful hint; a plugin's requests get a text box.
const REQUEST_HINTS = {
  melody: { example: "67 67 69:2 r 71", file: true,
            hint: "A melody to harmonize: MIDI pitches, :length in quarter notes, r for a rest; or a MIDI file." },
  prime: { example: "X:1\\nT:", hint: "Text to continue (\\n for a new line)." },
  tempo: { example: "72", hint: "Quarter notes per minute, 20-400." },
  program: { example: "choir", hint: "The instrument of every part: a General MIDI program 0-127 or a name (piano, organ, strings, choir, ...)." },
  programs: { example: "52,52,52,42", hint: "One instrument per part, from the top (programs or names, separated by commas)." },
};
const SOURCES = { "built-in": "Shipped", user: "Yours" };

const state = { styles: {}, samplers: {}, limits: {} };

async function api(path, options) {
  let response;
  try {
    response = await fetch("/api/" + path, options);
  } catch (err) {
    throw new Error("cannot reach the server (is composer serve still running?)");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    throw new Error(`the server answered ${response.status} without a message`);
  }
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
  if (message) $("error").scrollIntoView({ block: "nearest" });
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// ------------------------------------------------------------------------------------- settings

async function start() {
  document.getElementById("settings").addEventListener("submit", submit);
  $("style").addEventListener("change", chooseStyle);
  $("sampler").addEventListener("change", chooseSampler);
  window.addEventListener("resize", () => document.querySelectorAll("canvas.roll").forEach(drawRoll));
  try {
    const [styles, samplers] = await Promise.all([api("styles"), api("samplers")]);
    state.limits = styles.limits;
    for (const style of styles.styles) state.styles[style.name] = style;
    for (const sampler of samplers.samplers) state.samplers[sampler.name] = sampler;
    fillStyles(styles.styles);
    $("n").max = state.limits.max_outputs;
    $("temperature").max = state.limits.max_temperature;
    chooseStyle();
  } catch (err) {
    showError(err.message);
  }
}

function fillStyles(styles) {
  const groups = {};
  for (const style of styles) {
    const name = SOURCES[style.source] || `From ${style.source || "plugins"}`;
    groups[name] = groups[name] || element("optgroup", { label: name });
    const option = element("option", { value: style.name, text: style.error ? `${style.name} (unreadable)`
      : `${style.name} (${style.encoder})` });
    option.disabled = Boolean(style.error);
    groups[name].append(option);
  }
  $("style").replaceChildren(...Object.values(groups));
  const first = styles.find((s) => s.name === "bach" && !s.error) || styles.find((s) => !s.error);
  if (first) $("style").value = first.name;
}

function chooseStyle() {
  const style = state.styles[$("style").value];
  if (!style) return;
  $("style-description").textContent = style.description || "";
  $("length-unit").textContent = `(${style.length_unit})`;
  $("length").placeholder = style.defaults.length != null ? String(style.defaults.length) : "default";
  const chosen = style.defaults.sampler || "ancestral";
  $("sampler").replaceChildren(...Object.values(state.samplers).map((s) =>
    element("option", { value: s.name, text: s.name })));
  $("sampler").value = chosen;
  chooseSampler();
  $("label-field").hidden = !style.labels.length;
  $("label").replaceChildren(element("option", { value: "", text: "any (one per piece)" }),
    ...style.labels.map((label) => element("option", { value: label, text: label })));
  $("requests-field").hidden = !style.requests.length;
  $("requests").replaceChildren(...style.requests.map(requestField));
}

function requestField(name) {
  const known = REQUEST_HINTS[name] || { example: "", hint: `A generation request of this style's encoder.` };
  const box = element("div", { class: "request" },
    element("label", { for: `request-${name}`, text: name }),
    element("input", { id: `request-${name}`, type: "text", "data-request": name, placeholder: known.example }));
  if (known.file) {
    box.append(element("input", { id: `upload-${name}`, type: "file", "data-upload": name, "aria-label": `${name} file` }));
  }
  box.append(element("p", { class: "hint", text: known.hint }));
  return box;
}

function chooseSampler() {
  const style = state.styles[$("style").value];
  const sampler = state.samplers[$("sampler").value];
  if (!style || !sampler) return;
  const takesTemperature = "temperature" in sampler.options;
  $("temperature-field").style.visibility = takesTemperature ? "visible" : "hidden";
  const ownDefault = style.defaults.sampler === sampler.name || (!style.defaults.sampler && sampler.name === "ancestral");
  const temperature = ownDefault && style.defaults.temperature != null ? style.defaults.temperature
    : sampler.options.temperature;
  $("temperature").placeholder = temperature != null ? String(temperature) : "";
  $("sampler-description").textContent = sampler.description + (ownDefault ? " (this style's default)" : "");
}

function numberOf(id) {
  const input = $(id);
  if (input.validity && input.validity.badInput) throw new Error(`${id} must be a number`);
  return input.value === "" ? null : Number(input.value);
}

function readUpload(file) {
  return new Promise((resolve, reject) => {
    if (file.size > state.limits.max_upload) {
      reject(new Error(`${file.name} is larger than ${Math.round(state.limits.max_upload / 1e6)} MB`));
      return;
    }
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, data: String(reader.result).split(",", 2)[1] || "" });
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

async function collect() {
  const body = {
    style: $("style").value, n: numberOf("n"), seed: numberOf("seed"), length: numberOf("length"),
    sampler: $("sampler").value, label: $("label-field").hidden ? null : $("label").value || null,
    requests: {}, uploads: {},
  };
  if ($("temperature-field").style.visibility !== "hidden") body.temperature = numberOf("temperature");
  for (const input of document.querySelectorAll("[data-request]")) {
    if (input.value.trim()) body.requests[input.dataset.request] = input.value;
  }
  for (const input of document.querySelectorAll("[data-upload]")) {
    if (input.files.length) body.uploads[input.dataset.upload] = await readUpload(input.files[0]);
  }
  if ($("primer").files.length) body.primer = await readUpload($("primer").files[0]);
  return body;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  $("generate").disabled = true;
  try {
    const body = await collect();
    const job = await api("jobs", { method: "POST", headers: { "Content-Type": "application/json" },
                                    body: JSON.stringify(body) });
    addJob(job);
  } catch (err) {
    showError(err.message);
  } finally {
    $("generate").disabled = false;
  }
}

// ------------------------------------------------------------------------------------------ jobs

function addJob(job) {
  $("empty").hidden = true;
  const s = job.settings;
  const title = `${s.style} · seed ${s.seed}` + (s.n > 1 ? ` · ${s.n} pieces` : "");
  const card = element("article", { class: "job", id: `job-${job.id}`, "data-state": job.state },
    element("header", {}, element("h2", { text: title }), element("span", { class: "badge", text: job.state })),
    element("p", { class: "status" }),
    element("progress", { max: "1", value: "0" }),
    element("div", { class: "pieces" }));
  $("jobs").prepend(card);
  update(card, job);
  poll(card, job.id, 0);
}

async function poll(card, id, failures) {
  let job;
  try {
    job = await api(`jobs/${id}`);
  } catch (err) {
    card.querySelector(".status").textContent = err.message;
    if (failures < 20) setTimeout(() => poll(card, id, failures + 1), POLL_MS * 5);
    return;
  }
  update(card, job);
  if (job.state !== "done" && job.state !== "failed") setTimeout(() => poll(card, id, 0), POLL_MS);
}

function seconds(value) {
  return `${value.toFixed(1)} s`;
}

function statusLine(job) {
  if (job.state === "queued") return job.ahead ? `waiting: ${job.ahead} job${job.ahead > 1 ? "s" : ""} ahead` : "waiting";
  if (job.state === "running") {
    return job.max_steps ? `generating: step ${job.steps.toLocaleString()} of at most ${job.max_steps.toLocaleString()}`
      + ` · ${seconds(job.seconds)}` : `generating · ${seconds(job.seconds)}`;
  }
  if (job.state === "writing") return `writing files · ${seconds(job.seconds)}`;
  if (job.state === "failed") return job.error;
  return `done in ${seconds(job.seconds)} · sampler ${job.sampler}`;
}

function update(card, job) {
  card.dataset.state = job.state;
  card.querySelector(".badge").textContent = job.state;
  card.querySelector(".status").textContent = statusLine(job);
  const bar = card.querySelector("progress");
  if (job.state === "running" && job.max_steps) bar.value = job.steps / job.max_steps;
  else if (job.state === "writing") bar.value = 1;
  else bar.removeAttribute("value");  // indeterminate while waiting
  if (job.state === "done" && !card.dataset.shown) {
    card.dataset.shown = "1";
    showResults(card.querySelector(".pieces"), job);
  }
}

// --------------------------------------------------------------------------------------- results

function showResults(box, job) {
  for (const warning of job.warnings) box.append(element("p", { class: "warning", text: `note: ${warning}` }));
  const drawingsOnly = job.pieces.every((p) => p.image && !p.notes && p.text == null);
  const holder = drawingsOnly ? element("div", { class: "drawings" }) : box;
  if (drawingsOnly) box.append(holder);
  job.pieces.forEach((piece, index) => holder.append(showPiece(piece, job.id, index)));
  box.querySelectorAll("canvas.roll").forEach(drawRoll);
}

function showPiece(piece, jobId, index) {
  const card = element("div", { class: "piece", "data-name": piece.name },
    element("h3", { text: piece.name }, element("span", { class: "hint", text: piece.summary || "" })));
  if (piece.image) card.append(element("img", { class: "drawing", src: "/api/" + piece.image, alt: piece.name }));
  if (piece.notes) card.append(...pianoRoll(piece));
  if (piece.text != null) card.append(element("pre", { class: "text", text: piece.text }));
  if (piece.audio) card.append(player(piece, card));
  const links = element("p", { class: "downloads", text: "Files: " });
  for (const file of piece.files) {
    links.append(element("a", { href: "/api/" + file.url, download: file.name, "data-format": file.format,
                                 title: file.name, text: file.format }));
  }
  card.append(links);
  card.append(insideButton(jobId, index, card));
  return card;
}

// A look inside the LSTM: the piece read again by the model, its cells most correlated with what the encoder
// names (position in the bar, a voice's pitch, inside quotes...), and the picture `composer inspect` draws.
function insideButton(jobId, index, card) {
  const button = element("button", { type: "button", class: "inside", text: "Look inside the model" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = "reading the piece…";
    try {
      const found = await api(`jobs/${jobId}/inside/${index}`);
      button.remove();
      card.append(insideView(found));
    } catch (err) {
      button.disabled = false;
      button.textContent = "Look inside the model";
      card.append(element("p", { class: "error inside-error", role: "alert", text: err.message }));
    }
  });
  return button;
}

function insideView(found) {
  const list = element("ul", { class: "cells" });
  for (const [property, cells] of Object.entries(found.top)) {
    const shown = cells.map((c) => `layer ${c.layer} cell ${c.cell} (r = ${c.r >= 0 ? "+" : ""}${c.r.toFixed(2)})`);
    list.append(element("li", {}, element("b", { text: property }), ": " + shown.join(", ")));
  }
  const left = found.left_out ? ` (the first ${found.steps} positions; ${found.left_out} more not read)` : "";
  return element("figure", { class: "inside-view" },
    element("img", { src: "/api/" + found.image, alt: "activations of the most correlated cells" }),
    element("figcaption", { text: `Cell states (${found.state}) over the piece${left}; ` +
                                  "the cells that follow each property most closely:" }),
    list);
}

function pianoRoll(piece) {
  const canvas = element("canvas", { class: "roll", role: "img", "aria-label": `piano roll of ${piece.name}` });
  canvas.notes = piece.notes;
  const box = element("div", { class: "roll-box" }, canvas, element("div", { class: "playhead" }));
  const legend = element("div", { class: "legend" });
  piece.notes.voices.forEach((voice, i) => {
    const chip = element("span", { text: voice });
    chip.style.setProperty("--swatch", PALETTE[i % PALETTE.length]);
    legend.append(chip);
  });
  return piece.notes.voices.length > 1 ? [box, legend] : [box];
}

const LEFT = 34;  // pixels for the octave names

function rollGeometry(canvas) {
  const { notes, end } = canvas.notes;
  const pitches = notes.map((n) => n[0]);
  const low = Math.min(...pitches, 60) - 2;
  const high = Math.max(...pitches, 60) + 2;
  return { low, high, end: Math.max(end, 0.5), width: canvas.clientWidth - LEFT - 6, height: canvas.clientHeight };
}

function drawRoll(canvas) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(canvas.clientWidth * ratio);
  canvas.height = Math.round(canvas.clientHeight * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  const { low, high, end, width, height } = rollGeometry(canvas);
  const row = height / (high - low + 1);
  const y = (pitch) => (high - pitch) * row;
  const x = (time) => LEFT + (time / end) * width;
  g.fillStyle = "#fbfcfe";
  g.fillRect(0, 0, canvas.clientWidth, height);
  for (let pitch = low; pitch <= high; pitch++) {
    if ([1, 3, 6, 8, 10].includes(pitch % 12)) {  // black keys: a faint band
      g.fillStyle = "#f1f3f8";
      g.fillRect(LEFT, y(pitch), width, row);
    }
  }
  const tick = end <= 40 ? 1 : end <= 200 ? 5 : 30;  // a faint line every few seconds
  g.fillStyle = "#e9ecf2";
  for (let time = tick; time < end; time += tick) g.fillRect(Math.round(x(time)), 0, 1, height);
  g.font = "10px system-ui, sans-serif";
  g.textBaseline = "middle";
  for (let pitch = low; pitch <= high; pitch++) {
    if (pitch % 12 === 0) {  // every C, named as in scientific pitch notation (60 is C4)
      g.fillStyle = "#dde2ea";
      g.fillRect(LEFT, y(pitch) + row - 1, width, 1);
      g.fillStyle = "#7a8594";
      g.fillText(`C${pitch / 12 - 1}`, 4, Math.min(Math.max(y(pitch) + row / 2, 7), height - 7));
    }
  }
  for (const [pitch, start, stop, voice] of canvas.notes.notes) {
    g.fillStyle = PALETTE[voice % PALETTE.length];
    g.fillRect(x(start), y(pitch) + 0.5, Math.max(2, x(stop) - x(start) - 1), Math.max(2, row - 1));
  }
}

function player(piece, card) {
  const audio = element("audio", { controls: "", preload: "auto", src: "/api/" + piece.audio });
  const move = () => {
    const canvas = card.querySelector("canvas.roll");
    const head = card.querySelector(".playhead");
    if (!canvas || !head) return;
    const { end, width } = rollGeometry(canvas);
    head.style.display = audio.currentTime > 0 && audio.currentTime < end ? "block" : "none";
    head.style.left = `${LEFT + Math.min(audio.currentTime / end, 1) * width}px`;
    if (!audio.paused) requestAnimationFrame(move);
  };
  audio.addEventListener("play", move);
  audio.addEventListener("seeked", move);
  audio.addEventListener("ended", move);
  return audio;
}

start();
