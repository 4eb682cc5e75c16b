// The gallery: the key's jobs, newest first, each playable in place with its recipe, status, timings and cost.
import { ApiError, blobUrl, del, get, post } from "./api.js";
import { TERMINAL, eta, forget, formatSeconds, job, onJob, sceneOf, stepOf, timeLeft, update } from "./jobs.js";

const list = document.getElementById("gallery");
const empty = document.getElementById("empty");
const more = document.getElementById("more");
let cursor = null;
let autoplay = new Set();        // jobs submitted from this page: their video loads as soon as it is ready
let rerun = async () => {};      // set by the page: re-submit a recipe (same seed or a new one)
let remix = async () => {};      // set by the page: POST /v1/videos/{id}/remix, then watch the new job

export function initGallery(options) {
  rerun = options.rerun;
  remix = options.remix;
  onJob((video) => render(video));
  more.addEventListener("click", () => loadPage(false));
  document.getElementById("refresh").addEventListener("click", () => loadPage(true));
}

export function playWhenReady(id) { autoplay.add(id); }

export async function loadPage(first = true) {
  const params = new URLSearchParams({ limit: "12", order: "desc" });
  if (!first && cursor) params.set("after", cursor);
  const page = await get(`/v1/videos?${params}`);
  if (first) {
    for (const li of [...list.children]) if (!page.data.some((v) => v.id === li.dataset.id)) li.remove();
  }
  for (const video of page.data) {
    if (!list.querySelector(`[data-id="${video.id}"]`)) list.append(card(video));
    update(video);
  }
  cursor = page.last_id;
  more.hidden = !page.has_more;
  empty.hidden = list.children.length > 0;
}

/** Put a new job at the top. */
export function prepend(video) {
  if (!list.querySelector(`[data-id="${video.id}"]`)) list.prepend(card(video));
  empty.hidden = true;
  update(video);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function card(video) {
  const li = el("li", "card");
  li.dataset.id = video.id;
  li.innerHTML = `
    <div class="media"></div>
    <div class="card-body">
      <p class="card-prompt"></p>
      <p class="badges"></p>
      <p class="card-error" hidden></p>
      <div class="bar small" role="progressbar" aria-valuemin="0" aria-valuemax="100" hidden><span></span></div>
      <p class="card-progress" hidden></p>
      <p class="card-times"></p>
      <details class="recipe"><summary>Recipe</summary><pre></pre></details>
      <div class="card-actions"></div>
      <p class="field-error card-action-error" hidden></p>
    </div>`;
  return li;
}

function modelLabel(video) {
  return video.model && video.model !== video.backend ? video.model : video.backend;
}

function render(video) {
  const li = list.querySelector(`[data-id="${video.id}"]`);
  if (!li) return;
  li.dataset.status = video.status;
  const board = video.storyboard;
  li.querySelector(".card-prompt").textContent = board ? `${board.title} — ${board.scenes.length} scenes` : video.prompt;
  li.querySelector(".card-prompt").title = board ? board.scenes.map((s) => s.prompt).join(" | ") : video.prompt;

  const badges = li.querySelector(".badges");
  badges.replaceChildren(
    el("span", `status s-${video.status}`, video.status.replace("_", " ")),
    ...(board ? [el("span", "badge", "storyboard")] : []),
    el("span", "badge", modelLabel(video)),
    el("span", "badge", video.size),
    el("span", "badge", `${Number(video.seconds).toFixed(Number(video.seconds) % 1 ? 1 : 0)} s`),
    ...(video.seed != null ? [el("span", "badge", `seed ${video.seed}`)] : []),
  );

  const error = li.querySelector(".card-error");
  error.hidden = !(video.status === "failed" && video.error);
  if (!error.hidden) error.textContent = `Failed: ${plainError(video.error)}`;

  const running = !TERMINAL.has(video.status);
  const bar = li.querySelector(".bar");
  const progress = li.querySelector(".card-progress");
  bar.hidden = progress.hidden = !running;
  if (running) {
    bar.setAttribute("aria-valuenow", String(video.progress));
    bar.setAttribute("aria-label", `Progress of ${video.id}`);
    bar.firstElementChild.style.width = `${video.progress}%`;
    const scene = sceneOf(video);
    const left = eta(video);
    progress.textContent = [
      video.status === "queued" ? "waiting in the queue" : (scene ? `scene ${scene.k} of ${scene.n}` : video.stage || "starting"),
      stepOf(video),
      `${video.progress}%`,
      left != null ? `${timeLeft(left)} left` : null,
    ].filter(Boolean).join(" · ");
  }

  const times = [`made ${new Date(video.created_at * 1000).toLocaleString()}`];
  if (video.timings && video.timings.total != null) times.push(`took ${formatSeconds(video.timings.total)}`);
  else if (video.completed_at) times.push(`took ${formatSeconds(video.completed_at - video.created_at)}`);
  times.push(costText(video.cost));
  li.querySelector(".card-times").textContent = times.join(" · ");
  if (video.timings) {
    li.querySelector(".card-times").title = Object.entries(video.timings)
      .map(([k, v]) => `${k}: ${Number(v).toFixed(2)} s`).join("\n");
  }
  const recipe = li.querySelector(".recipe");
  recipe.hidden = !video.recipe && !board;
  recipe.querySelector("pre").textContent = JSON.stringify(video.recipe || { storyboard: board }, null, 2);

  renderMedia(li, video);
  renderActions(li, video);
}

function costText(cost) {
  if (!cost) return "free (local)";
  const amount = cost.amount ?? cost.usd ?? cost.total ?? cost.credits;
  const unit = cost.currency || (cost.usd != null ? "USD" : cost.credits != null ? "credits" : "");
  return amount != null ? `cost ${amount} ${unit}`.trim() : `cost ${JSON.stringify(cost)}`;
}

/** A failure in plain words: the message, without the internal class names. */
export function plainError(error) {
  if (!error) return "unknown error";
  let message = String(error.message || error.code || "unknown error");
  message = message.replace(/^[A-Z][A-Za-z]+(Error|Exception): /, "");
  return message.charAt(0).toUpperCase() + message.slice(1);
}

function renderMedia(li, video) {
  const media = li.querySelector(".media");
  const state = video.status === "completed" ? "ready" : video.status;
  if (media.dataset.state === state) return;
  media.dataset.state = state;
  media.replaceChildren();
  if (video.status !== "completed") {
    const label = { queued: "Queued", in_progress: "Generating…", failed: "Failed", cancelled: "Cancelled" }[video.status];
    media.append(el("div", `placeholder p-${video.status}`, label));
    return;
  }
  const play = el("button", "play");
  play.type = "button";
  play.setAttribute("aria-label", `Play ${video.prompt || video.id}`);
  const img = el("img", "thumb");
  img.alt = "";
  play.append(img, el("span", "play-icon"));
  media.append(play);
  blobUrl(`/v1/videos/${encodeURIComponent(video.id)}/content?variant=thumbnail`)
    .then((url) => { img.src = url; })
    .catch(() => { /* no thumbnail: the button still plays */ });
  play.addEventListener("click", () => loadVideo(li, video, true));
  if (autoplay.has(video.id)) {
    autoplay.delete(video.id);
    loadVideo(li, video, false);
  }
}

async function loadVideo(li, video, focus) {
  const media = li.querySelector(".media");
  try {
    const url = await blobUrl(`/v1/videos/${encodeURIComponent(video.id)}/content`);
    const player = document.createElement("video");
    Object.assign(player, { src: url, controls: true, autoplay: true, loop: true, muted: true, playsInline: true });
    player.setAttribute("aria-label", `Video: ${video.prompt || video.id}`);
    media.replaceChildren(player);
    media.dataset.state = "ready";
    if (focus) player.focus();
  } catch (err) {
    showActionError(li, err);
  }
}

function button(text, className, onClick) {
  const b = el("button", className, text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

function renderActions(li, video) {
  const actions = li.querySelector(".card-actions");
  const key = `${video.status}`;
  if (actions.dataset.key === key) return;
  actions.dataset.key = key;
  const items = [];
  if (!TERMINAL.has(video.status)) {
    items.push(button("Cancel", "ghost small danger", async () => {
      try { update(await post(`/v1/videos/${encodeURIComponent(video.id)}/cancel`)); } catch (err) { showActionError(li, err); }
    }));
  } else {
    items.push(button("Re-run", "ghost small", () => rerun(job(video.id), false).catch((err) => showActionError(li, err))));
    items.push(button("New seed", "ghost small", () => rerun(job(video.id), true).catch((err) => showActionError(li, err))));
    if (video.status === "completed") {
      items.push(button("Download", "ghost small", () => download(li, video)));
      items.push(button("Edit", "ghost small edit", () => toggleEdit(li, video)));
    }
  }
  items.push(button("Delete", "ghost small danger delete", (ev) => remove(li, video, ev.currentTarget)));
  actions.replaceChildren(...items);
}

/** The card's small edit form: a new prompt and a strength, sent as a remix of this video. */
function toggleEdit(li, video) {
  const open = li.querySelector(".edit-form");
  if (open) { open.remove(); return; }
  const form = el("form", "edit-form");
  form.innerHTML = `
    <label>New prompt <input name="prompt" required maxlength="5000"></label>
    <label>Strength <input name="strength" type="number" min="0" max="1" step="0.05" value="0.6" required></label>
    <span class="hint">0 keeps the video, 1 ignores it</span>
    <button type="submit" class="small">Remix</button>`;
  form.elements.prompt.value = video.prompt || "";
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const submitButton = form.querySelector("button");
    submitButton.disabled = true;
    li.querySelector(".card-action-error").hidden = true;
    try {
      // the source's steps too, as Re-run keeps them; the service runs it on the source's backend and model
      const steps = video.recipe && video.recipe.num_inference_steps;
      const body = { prompt: form.elements.prompt.value, strength: Number(form.elements.strength.value) };
      if (steps) body.steps = steps;
      await remix(video, body);
      form.remove();
    } catch (err) {
      showActionError(li, err);
      submitButton.disabled = false;
    }
  });
  li.querySelector(".card-actions").after(form);
  form.elements.prompt.focus();
}

async function download(li, video) {
  try {
    const url = await blobUrl(`/v1/videos/${encodeURIComponent(video.id)}/content`);
    const a = document.createElement("a");
    a.href = url;
    a.download = `${video.id}.mp4`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    showActionError(li, err);
  }
}

async function remove(li, video, btn) {
  // two steps instead of a blocking confirm(): the first press asks, the second deletes
  if (btn.dataset.armed !== "1") {
    btn.dataset.armed = "1";
    btn.textContent = "Really delete?";
    setTimeout(() => { if (btn.isConnected) { btn.dataset.armed = ""; btn.textContent = "Delete"; } }, 4000);
    return;
  }
  try {
    await del(`/v1/videos/${encodeURIComponent(video.id)}`);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) { showActionError(li, err); return; }
  }
  forget(video.id);
  const next = li.nextElementSibling || li.previousElementSibling;
  li.remove();
  empty.hidden = list.children.length > 0;
  if (next) next.querySelector("button")?.focus();
}

function showActionError(li, err) {
  const p = li.querySelector(".card-action-error");
  p.textContent = err.message || String(err);
  p.hidden = false;
}
