// Kinema's page: the create form (a video or a storyboard), live progress, and the gallery (gallery.js).
// It talks to the service only through its public HTTP API (api.js); no build step, no third-party requests.
import { ApiError, blob, get, keyStore, post, postForm } from "./api.js";
import { initGallery, loadPage, plainError, playWhenReady, prepend } from "./gallery.js";
import { TERMINAL, eta, onJob, sceneOf, stageName, stepOf, timeLeft } from "./jobs.js";

const $ = (id) => document.getElementById(id);
const form = $("create-form");
const state = { models: [], caps: null, tab: "video", current: null };

// -- the API key ---------------------------------------------------------------------------------------------------
const dialog = $("key-dialog");

function askForKey(message) {
  $("api-key").value = keyStore.get();
  const error = $("key-error");
  error.textContent = message || "";
  error.hidden = !message;
  if (!dialog.open) dialog.showModal();
  $("api-key").focus();
}

$("key-button").addEventListener("click", () => askForKey());
$("key-forget").addEventListener("click", () => { keyStore.set(""); $("api-key").value = ""; dialog.close(); start(); });
$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("api-key").value.trim();
  if (!value) { askForKey("Paste the key that 'kinema keys create' printed."); return; }
  keyStore.set(value);
  dialog.close();
  start();
});

// -- models and their capabilities ---------------------------------------------------------------------------------
function fillModels(models) {
  state.models = models;
  const select = $("model");
  const previous = select.value;
  select.replaceChildren();
  const ready = document.createElement("optgroup");
  ready.label = "Ready";
  const off = document.createElement("optgroup");
  off.label = "Not set up on this server";
  for (const m of models) {
    const option = new Option(m.id === m.backend ? `${m.id} (default model)` : m.id, m.id);
    if (m.id === m.backend && m.model && m.model !== m.backend) option.text = `${m.backend} · ${m.model}`;
    option.disabled = !m.usable;
    if (!m.usable && m.reason) option.title = m.reason;
    (m.usable ? ready : off).append(option);
  }
  if (ready.children.length) select.append(ready);
  if (off.children.length) select.append(off);
  const pick = models.find((m) => m.id === previous && m.usable) || models.find((m) => m.default && m.usable)
    || models.find((m) => m.usable) || models[0];
  if (pick) select.value = pick.id;
  applyModel();
}

function currentModel() { return state.models.find((m) => m.id === $("model").value) || null; }

function applyModel() {
  const model = currentModel();
  const caps = (model && model.capabilities) || null;
  state.caps = caps;
  const note = $("model-note");
  const bits = [];
  if (model && model.description) bits.push(model.description);
  if (model && !model.usable && model.reason) bits.push(`Not usable: ${model.reason}`);
  if (caps && caps.size_rule) bits.push(`sizes: ${caps.size_rule}`);
  note.textContent = bits.join(" · ");
  if (!caps) return;

  const sizes = caps.sizes && caps.sizes.length ? caps.sizes : [caps.default_size];
  $("size-list").replaceChildren(...sizes.map(([w, h]) => new Option(`${w}x${h}`, `${w}x${h}`)));
  $("size").value = caps.default_size ? `${caps.default_size[0]}x${caps.default_size[1]}` : "";

  const duration = $("duration");
  const seconds = $("duration-seconds");
  const choices = durationChoices(caps);
  duration.hidden = !choices;
  seconds.hidden = !!choices;
  if (choices) {
    duration.replaceChildren(...choices.map((c) => new Option(c.label, c.value)));
    const preferred = choices.find((c) => c.preferred) || choices[0];
    duration.value = preferred.value;
    $("duration").setAttribute("aria-label", "Duration");
  } else {
    seconds.value = String(Math.round((caps.default_frames / (caps.default_fps || 8)) * 10) / 10);
  }

  const modes = caps.modes || [];
  // a keyframes model takes a start image too (from one to the other), even without image-to-video alone
  $("image-field").hidden = !(modes.includes("i2v") || modes.includes("keyframes"));
  $("last-field").hidden = !modes.includes("keyframes");
  const references = modes.includes("references") && caps.max_references > 0;
  $("references-field").hidden = !references;
  $("references-limit").textContent = references
    ? `up to ${caps.max_references} image${caps.max_references === 1 ? "" : "s"}` : "";
  syncInputs();
  const steps = $("steps");
  steps.placeholder = caps.default_steps != null ? String(caps.default_steps) : "";
  if (caps.max_steps) steps.max = String(caps.max_steps);
  const guidance = $("guidance");
  guidance.placeholder = caps.default_guidance != null ? String(caps.default_guidance) : "";
  if (caps.max_guidance) guidance.max = String(caps.max_guidance);
  $("fps").placeholder = caps.default_fps ? String(caps.default_fps) : "";
  $("negative").disabled = caps.negative_prompt === false;
  $("seed").disabled = caps.seed === false;
}

/** Durations the backend accepts, as select options; null when there are too many to list (use seconds). */
function durationChoices(caps) {
  const fps = caps.default_fps || 8;
  if (caps.durations && caps.durations.length) {
    return caps.durations.map((d, i) => ({ label: `${d} s`, value: `s:${d}`, preferred: i === 0 }));
  }
  const step = Math.max(1, caps.frame_step || 1);
  const offset = caps.frame_offset || 0;
  const first = offset + step * Math.max(0, Math.ceil((caps.min_frames - offset) / step));
  const count = Math.floor((caps.max_frames - first) / step) + 1;
  if (!(count > 0) || count > 24) return null;
  const out = [];
  for (let f = first; f <= caps.max_frames; f += step) {
    const s = Math.round((f / fps) * 100) / 100;
    out.push({ label: `${s} s · ${f} frames`, value: `f:${f}`, preferred: f === caps.default_frames });
  }
  return out;
}

// -- input images: start image, last frame, reference images ---------------------------------------------------------
/** A picker's chosen files, when its field is shown and it is enabled (what a submit sends). */
function chosenFiles(id) {
  const input = $(id);
  return input.closest(".field").hidden || input.disabled ? [] : [...input.files];
}

/** References go with the prompt alone (the service refuses them beside a start or last image), so choosing either
 * kind disables the other kind's pickers until cleared; a picker with files offers its Clear button. */
function syncInputs() {
  const has = (id) => !$(id).closest(".field").hidden && $(id).files.length > 0;
  const references = has("references");
  const ends = has("image") || has("last-image");
  $("image").disabled = references;
  $("last-image").disabled = references;
  $("references").disabled = ends && !references;
  for (const button of document.querySelectorAll(".clear-files")) button.hidden = $(button.dataset.clears).files.length === 0;
}

/** More reference images than the model takes: refused at the field before any upload, worded as the service words
 * its own refusal (it refuses them too, naming `references`, and that answer shows at the same field). */
function referencesRefusal() {
  const count = chosenFiles("references").length;
  const max = (state.caps && state.caps.max_references) || 0;
  if (count <= max) return null;
  return new ApiError(400, { error: { param: "references", message: `references: has ${count} images; `
    + `${$("model").value} takes at most ${max} (allowed: 1 to ${max} images)` } });
}

function clearFieldError(input) {
  const slot = input.closest(".field").querySelector(".field-error");
  slot.hidden = true;
  slot.textContent = "";
  input.removeAttribute("aria-invalid");
}

for (const id of ["image", "last-image", "references"]) {
  $(id).addEventListener("change", () => {
    clearFieldError($(id));
    syncInputs();
    const refused = id === "references" && referencesRefusal();
    if (refused) showError(refused);
  });
}

for (const button of document.querySelectorAll(".clear-files")) {
  button.addEventListener("click", () => {
    const input = $(button.dataset.clears);
    input.value = "";
    clearFieldError(input);
    syncInputs();
    input.focus();  // the button hides itself: keep the keyboard where it was
  });
}

// -- the prompt helper ---------------------------------------------------------------------------------------------
async function loadLibrary() {
  const lib = await get("/v1/prompt-library");
  for (const select of document.querySelectorAll("[data-library]")) {
    const names = lib.library[select.dataset.library] || {};
    select.replaceChildren(new Option("Any", ""), ...Object.entries(names).map(([name, phrase]) => {
      const o = new Option(name.replace(/-/g, " "), name);
      o.title = phrase;
      return o;
    }));
  }
  $("part-template").replaceChildren(new Option("None", ""), ...Object.keys(lib.templates).map((t) => new Option(t, t)));
}

$("build-prompt").addEventListener("click", async () => {
  const parts = {};
  for (const input of document.querySelectorAll("[data-part]")) if (input.value.trim()) parts[input.dataset.part] = input.value.trim();
  clearErrors($("builder"));
  try {
    const made = await post("/v1/prompts", { subject: "", ...parts });
    $("prompt").value = made.prompt;
    if (made.negative_prompt) { $("negative").value = made.negative_prompt; }
    $("prompt").focus();
  } catch (err) {
    showError(err, $("builder"), $("builder-error"));
  }
});

// -- example prompts -------------------------------------------------------------------------------------------------
for (const example of document.querySelectorAll("#examples .example")) {
  example.addEventListener("click", () => {
    $("prompt").value = example.textContent.trim();
    clearErrors(form);
    $("prompt").focus();
  });
}

// -- tabs ------------------------------------------------------------------------------------------------------------
const tabs = [$("tab-video"), $("tab-storyboard")];

function selectTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  state.tab = tab === tabs[0] ? "video" : "storyboard";
  $("submit").textContent = state.tab === "video" ? "Generate" : "Make film";
  clearErrors(form);
}

for (const t of tabs) {
  t.addEventListener("click", () => selectTab(t));
  t.addEventListener("keydown", (ev) => {
    const i = tabs.indexOf(t);
    const j = ev.key === "ArrowRight" ? (i + 1) % tabs.length : ev.key === "ArrowLeft" ? (i + tabs.length - 1) % tabs.length : -1;
    if (j >= 0) { ev.preventDefault(); tabs[j].focus(); selectTab(tabs[j]); }
  });
}

// -- storyboard scenes ---------------------------------------------------------------------------------------------
let sceneSerial = 0;

function addScene(values = {}) {
  const node = $("scene-template").content.firstElementChild.cloneNode(true);
  const n = ++sceneSerial;
  for (const [cls, field] of [["prompt", "scene-prompt"], ["duration", "scene-duration"], ["transition", "scene-transition"], ["continuity", "scene-continuity"]]) {
    const input = node.querySelector(`.${field}`);
    input.id = `scene-${n}-${cls}`;
    const label = node.querySelector(`.scene-${cls}-label`);
    if (label && cls !== "continuity") label.htmlFor = input.id;
  }
  if (values.prompt) node.querySelector(".scene-prompt").value = values.prompt;
  if (values.duration) node.querySelector(".scene-duration").value = values.duration;
  if (values.transition) node.querySelector(".scene-transition").value = values.transition;
  node.querySelector(".scene-continuity").checked = !!values.continuity;
  node.querySelector(".scene-remove").addEventListener("click", () => {
    if ($("scenes").children.length <= 1) return;
    node.remove();
    numberScenes();
    $("scenes").lastElementChild?.querySelector("textarea")?.focus();
  });
  $("scenes").append(node);
  numberScenes();
  return node;
}

function numberScenes() {
  [...$("scenes").children].forEach((li, i) => {
    li.querySelector(".scene-number").textContent = `Scene ${i + 1}`;
    li.querySelector(".scene-prompt").setAttribute("aria-label", `Scene ${i + 1} prompt`);
    li.querySelector(".scene-remove").setAttribute("aria-label", `Remove scene ${i + 1}`);
    li.querySelector(".scene-continuity").closest(".field").hidden = i === 0;
    if (i === 0) li.querySelector(".scene-continuity").checked = false;
  });
}

$("add-scene").addEventListener("click", () => addScene().querySelector("textarea").focus());

// -- errors next to their fields -----------------------------------------------------------------------------------
function clearErrors(root) {
  for (const p of root.querySelectorAll(".field-error, .form-error")) { p.hidden = true; p.textContent = ""; }
  for (const input of root.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** Where an error about `param` goes: the field's own slot when there is one ("scenes[1].prompt" included). */
function slotFor(param, root) {
  if (!param) return null;
  const scene = /^scenes\[(\d+)\]\.?([a-z_]*)/.exec(param);
  if (scene) {
    const li = $("scenes").children[Number(scene[1])];
    if (li) return li.querySelector(`[data-scene-field="${scene[2] || "prompt"}"]`) || li.querySelector("[data-scene-field]");
  }
  const name = param.split(/[.[]/)[0];
  for (const slot of root.querySelectorAll("[data-error-for]")) {
    if (slot.closest("[hidden]") && !slot.closest(".field-error")) continue;
    if (slot.dataset.errorFor.split(" ").includes(name)) {
      const pane = slot.closest(".pane");
      if (!pane || !pane.hidden) return slot;
    }
  }
  return null;
}

function showError(err, root = form, fallback = $("form-error")) {
  const message = err instanceof ApiError ? err.message : `Could not reach the server (${err.message || err}).`;
  const slot = (err instanceof ApiError && slotFor(err.param, root)) || fallback;
  slot.textContent = message;
  slot.hidden = false;
  slot.setAttribute("role", "alert");
  const input = slot.closest(".field")?.querySelector("input, textarea, select");
  if (input) {
    input.setAttribute("aria-invalid", "true");
    const details = input.closest("details");
    if (details) details.open = true;
    input.focus();
  }
  if (err instanceof ApiError && err.status === 401) askForKey(err.message);
}

// -- submit ----------------------------------------------------------------------------------------------------------
function numberOrNull(id) {
  const raw = $(id).value.trim();
  if (raw === "" || $(id).disabled) return null;
  const n = Number(raw);
  return Number.isFinite(n) ? n : raw;       // the server names what is wrong with text
}

function sharedFields() {
  const fields = { model: $("model").value || undefined };
  const size = $("size").value.trim();
  if (size) fields.size = size;
  for (const [id, name] of [["seed", "seed"], ["steps", "steps"], ["guidance", "guidance"], ["fps", "fps"]]) {
    const v = numberOrNull(id);
    if (v !== null) fields[name] = v;
  }
  const negative = $("negative").value.trim();
  if (negative && !$("negative").disabled) fields.negative_prompt = negative;
  return fields;
}

function videoFields() {
  const fields = { prompt: $("prompt").value, ...sharedFields() };
  if (!$("duration").hidden && $("duration").value) {
    const [kind, value] = $("duration").value.split(":");
    if (kind === "f") fields.num_frames = Number(value); else fields.seconds = value;
  } else if (!$("duration-seconds").hidden && $("duration-seconds").value.trim()) {
    fields.seconds = $("duration-seconds").value.trim();
  }
  return fields;
}

function storyboardFields() {
  const scenes = [...$("scenes").children].map((li, i) => {
    const scene = { prompt: li.querySelector(".scene-prompt").value, transition: li.querySelector(".scene-transition").value };
    const d = li.querySelector(".scene-duration").value.trim();
    if (d) scene.duration = Number.isFinite(Number(d)) ? Number(d) : d;
    if (i > 0 && li.querySelector(".scene-continuity").checked) scene.continuity = true;
    return scene;
  });
  return { title: $("sb-title").value.trim() || "Storyboard", scenes, ...sharedFields() };
}

// The input images ({image, last, references}) of each job sent from this page, by job id, so a re-run from the
// gallery sends the same files again without a round trip. After a reload they are fetched back from the job
// (GET /v1/videos/{id}/content?variant=input_reference, last_image, or reference&index=i).
const sentFiles = new Map();

/** One input image of a job as a File, or undefined when the service has none (404). */
async function inputOf(video, variant, index = 0) {
  const query = variant === "reference" ? `variant=reference&index=${index}` : `variant=${variant}`;
  try {
    const data = await blob(`/v1/videos/${encodeURIComponent(video.id)}/content?${query}`);
    const name = `${video.id}-${variant === "reference" ? `reference${index}` : variant}.png`;
    return new File([data], name, { type: data.type || "image/png" });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return undefined;
    throw err;
  }
}

/** A job's input images as the re-run sends them: kept from the submit, else fetched back. */
async function inputsOf(video, recipe) {
  const sent = sentFiles.get(video.id) || {};
  const files = { ...sent };
  if (recipe.image && !files.image) files.image = await inputOf(video, "input_reference");
  if (recipe.last_image && !files.last) files.last = await inputOf(video, "last_image");
  const wanted = (recipe.references || []).length;
  if (wanted && (files.references || []).length !== wanted) {
    files.references = [];
    for (let i = 0; i < wanted; i++) {
      const ref = await inputOf(video, "reference", i);
      if (!ref) break;
      files.references.push(ref);
    }
  }
  sentFiles.set(video.id, files);
  return files;
}

/** Send a job; `files` are a video's input images: `image` (input_reference), `last` (last_image) and `references`
 * (repeated parts), sent as multipart when there is any. */
async function submit(kind, fields, files = {}) {
  let video;
  const references = files.references || [];
  if (kind === "storyboard") {
    video = await post("/v1/storyboards", fields);
  } else if (files.image || files.last || references.length) {
    const data = new FormData();
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) data.append(k, String(v));
    if (files.image) data.append("input_reference", files.image, files.image.name);
    if (files.last) data.append("last_image", files.last, files.last.name);
    for (const ref of references) data.append("references", ref, ref.name);
    video = await postForm("/v1/videos", data);
    sentFiles.set(video.id, { image: files.image, last: files.last, references });
  } else {
    video = await post("/v1/videos", fields);
  }
  track(video);
  return video;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  clearErrors(form);
  const button = $("submit");
  button.disabled = true;
  try {
    if (state.tab === "video") {
      const refused = referencesRefusal();
      if (refused) throw refused;
      const files = { image: chosenFiles("image")[0], last: chosenFiles("last-image")[0], references: chosenFiles("references") };
      await submit("video", videoFields(), files);
    } else {
      await submit("storyboard", storyboardFields());
    }
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
});

/** Re-run a job from its recipe: the same seed (the same output), or a new random seed. */
async function rerun(video, newSeed) {
  if (video.kind === "storyboard") {
    const body = structuredClone((video.recipe && video.recipe.storyboard) || {
      title: video.storyboard.title, model: video.model,
      scenes: video.storyboard.scenes.map(({ prompt, duration, transition, continuity }) => ({ prompt, duration, transition, continuity })),
    });
    if (newSeed) { delete body.seed; for (const s of body.scenes) delete s.seed; }
    return submit("storyboard", body);
  }
  const r = video.recipe;
  const fields = r ? {
    prompt: r.prompt, model: r.model && r.model !== r.backend ? `${r.backend}/${r.model}` : r.backend,
    size: `${r.width}x${r.height}`, num_frames: r.num_frames, fps: r.fps, steps: r.num_inference_steps,
    guidance: r.guidance_scale, negative_prompt: r.negative_prompt || undefined, seed: r.seed,
  } : { prompt: video.prompt, model: video.model, size: video.size, seconds: video.seconds, seed: video.seed ?? undefined };
  for (const k of Object.keys(fields)) if (fields[k] === null || fields[k] === undefined) delete fields[k];
  if (newSeed) delete fields.seed;
  if (r && r.keyframes && r.keyframes.length) {
    throw new Error("This video used images at given times (keyframes), which this page cannot send: run it again "
      + "through the API or the command line.");
  }
  const kept = r ? await inputsOf(video, r) : {};
  const files = {};
  if (r && r.last_image) {
    files.last = kept.last;
    if (!files.last) {
      throw new Error("This video ends on a last frame the server no longer keeps: choose it again under Last "
        + "frame and press Generate.");
    }
  }
  if (r && r.references && r.references.length) {
    files.references = kept.references || [];
    if (files.references.length !== r.references.length) {
      throw new Error("This video used reference images the server no longer keeps: choose them again under "
        + "Reference images and press Generate.");
    }
  }
  if (r && r.image) {
    files.image = kept.image;
    if (!files.image) {
      throw new Error("This video started from an image the server no longer keeps: choose the image under Start "
        + "image and press Generate.");
    }
  }
  return submit("video", fields, files);
}

/** A remix (an edit after a new prompt) of a completed video: the gallery card's Edit action. */
async function remix(video, body) {
  const made = await post(`/v1/videos/${encodeURIComponent(video.id)}/remix`, body);
  track(made);
  return made;
}

// -- the job being watched -------------------------------------------------------------------------------------------
function track(video) {
  state.current = video.id;
  playWhenReady(video.id);
  $("current").hidden = false;
  const board = video.storyboard;
  const scenes = $("scene-progress");
  scenes.hidden = !board;
  scenes.replaceChildren(...(board ? board.scenes.map((s, i) => {
    const li = document.createElement("li");
    li.dataset.index = String(i);
    li.innerHTML = `<span class="dot" aria-hidden="true"></span><span class="scene-label"></span><span class="scene-state">waiting</span>`;
    li.querySelector(".scene-label").textContent = `${i + 1}. ${s.prompt}`;
    return li;
  }) : []));
  prepend(video);
  renderCurrent(video);
}

function renderCurrent(video) {
  if (video.id !== state.current) return;
  const bar = $("current-bar");
  const pct = video.status === "completed" ? 100 : video.progress;
  bar.setAttribute("aria-valuenow", String(pct));
  bar.firstElementChild.style.width = `${pct}%`;
  bar.dataset.status = video.status;
  $("current-percent").textContent = `${pct}%`;
  const title = video.storyboard ? video.storyboard.title : video.prompt;
  const verb = { queued: "Queued", in_progress: "Generating", completed: "Done", failed: "Failed", cancelled: "Cancelled" }[video.status];
  $("current-title").textContent = `${verb}: ${title}`;
  const scene = sceneOf(video);
  const stage = stageName(video);
  $("current-stage").textContent = video.status === "queued" ? "waiting in the queue"
    : scene ? `scene ${scene.k} of ${scene.n}${stage ? `: ${stage}` : ""}` : (video.stage || video.status);
  const step = stepOf(video);
  $("current-step").textContent = video.stage === "assembling" ? "cutting the film"
    : step || (scene ? `scene ${scene.k} of ${scene.n}` : "–");
  const left = eta(video);
  $("current-eta").textContent = TERMINAL.has(video.status) ? "–" : left != null ? timeLeft(left) : "estimating…";
  $("cancel").hidden = TERMINAL.has(video.status);
  const error = $("current-error");
  error.hidden = video.status !== "failed";
  if (video.status === "failed") error.textContent = plainError(video.error);
  if (video.storyboard) {
    const n = video.storyboard.scenes.length;
    for (const li of $("scene-progress").children) {
      const i = Number(li.dataset.index) + 1;
      let s = "waiting";
      if (video.status === "completed" || video.stage === "assembling" || (scene && i < scene.k)) s = "done";
      else if (scene && i === scene.k && video.status === "in_progress") s = "generating";
      else if (TERMINAL.has(video.status)) s = video.status === "completed" ? "done" : video.status;
      li.dataset.state = s;
      li.querySelector(".scene-state").textContent = s;
      li.setAttribute("aria-label", `Scene ${i} of ${n}: ${s}`);
    }
  }
}

onJob((video) => renderCurrent(video));
$("cancel").addEventListener("click", async () => {
  if (!state.current) return;
  try { await post(`/v1/videos/${encodeURIComponent(state.current)}/cancel`); } catch (err) { showError(err, $("current"), $("current-error")); }
});

// -- start -----------------------------------------------------------------------------------------------------------
async function health() {
  try {
    const h = await get("/healthz");
    $("service-status").textContent = `v${h.version} · ${h.workers} worker${h.workers === 1 ? "" : "s"} · ${h.queued} queued`;
  } catch { $("service-status").textContent = "service unreachable"; }
}

async function start() {
  health();
  try {
    const models = await get("/v1/models");
    fillModels(models.data);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      askForKey(keyStore.get() ? "That key was refused; check it, or make a new one with 'kinema keys create'." : "");
    } else {
      $("form-error").textContent = `Could not load the models: ${err.message}`;
      $("form-error").hidden = false;
    }
    return;
  }
  $("key-button").textContent = keyStore.get() ? "API key ✓" : "API key";
  await Promise.all([loadLibrary().catch(() => {}), loadPage(true).catch((err) => showError(err))]);
  document.body.dataset.ready = "1";
}

initGallery({ rerun, remix });
$("model").addEventListener("change", applyModel);
addScene({ prompt: "", duration: 2 });
addScene({ prompt: "", duration: 2 });
start();
