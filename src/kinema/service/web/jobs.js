// Jobs the page knows about, their live event streams, and the ETA each one's progress implies.
import { get, streamEvents } from "./api.js";

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const jobs = new Map();          // id -> the latest video object
const streams = new Map();       // id -> AbortController of its event stream
const pace = new Map();          // id -> {t, p}: when and at what progress the page first saw it running
const listeners = new Set();

export function onJob(fn) { listeners.add(fn); }

export function job(id) { return jobs.get(id); }

/** Record a video object (from a list, a create, or an event) and tell the views. */
export function update(video) {
  if (!video || !video.id) return;
  const before = jobs.get(video.id);
  // events and polls can cross: never let an older snapshot move a job backwards
  if (before && TERMINAL.has(before.status) && !TERMINAL.has(video.status)) return;
  jobs.set(video.id, video);
  if (video.status === "in_progress" && !pace.has(video.id)) pace.set(video.id, { t: performance.now(), p: video.progress });
  for (const fn of listeners) fn(video, before);
  if (!TERMINAL.has(video.status)) watch(video.id);
}

export function forget(id) {
  jobs.delete(id);
  pace.delete(id);
  const c = streams.get(id);
  if (c) c.abort();
  streams.delete(id);
}

/**
 * Seconds left: the server's estimate for a single video (from the pace of its steps), else extrapolated from the
 * progress made since the page first saw the job running (a storyboard's server estimate covers one scene only);
 * null if unknown.
 */
export function eta(video) {
  if (video.status !== "in_progress") return null;
  if (video.eta_seconds != null && !video.scenes) return video.eta_seconds;
  const start = pace.get(video.id);
  if (!start) return null;
  const done = video.progress - start.p;
  if (done <= 0 || video.progress <= 0) return null;
  const elapsed = (performance.now() - start.t) / 1000;
  return Math.max(0, (elapsed / done) * (100 - video.progress));
}

/** Follow a job's event stream until it ends; falls back to polling if the stream breaks. */
export function watch(id) {
  if (streams.has(id)) return;
  const controller = new AbortController();
  streams.set(id, controller);
  const run = async () => {
    let failures = 0;
    while (!controller.signal.aborted) {
      try {
        await streamEvents(id, (_type, video) => update(video), controller.signal);
        failures = 0;
      } catch (err) {
        if (controller.signal.aborted) break;
        if (err && err.status === 404) { break; }
        failures += 1;
      }
      const known = jobs.get(id);
      if (!known || TERMINAL.has(known.status)) break;
      // the stream ended early (timeout, restart): read the job once, then follow again
      await new Promise((r) => setTimeout(r, Math.min(5000, 300 * 2 ** failures)));
      try { update(await get(`/v1/videos/${encodeURIComponent(id)}`)); } catch { /* retried next round */ }
    }
    streams.delete(id);
  };
  run();
}

export function formatSeconds(s) {
  if (s == null || !isFinite(s)) return "–";
  if (s < 1) return "under a second";
  if (s < 90) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/** A storyboard's scene being made: {k: 2, n: 3} (from the job's fields, or a "scene 2/3" stage), else null. */
export function sceneOf(video) {
  if (video.scene && video.scenes) return { k: video.scene, n: video.scenes };
  const m = /^scene (\d+)\/(\d+)/.exec(video.stage || "");
  return m ? { k: Number(m[1]), n: Number(m[2]) } : null;
}

/** The stage's own name: "denoising" (a storyboard's "scene 2/3: denoising" loses its scene prefix). */
export function stageName(video) {
  return (video.stage || "").replace(/^scene \d+\/\d+:?\s*/, "");
}

/** Seconds left in words: "under a second", "about 12 s". */
export function timeLeft(seconds) {
  return seconds < 1 ? "under a second" : `about ${formatSeconds(seconds)}`;
}

/** "step 7 of 20" while a stage counts steps, else null. */
export function stepOf(video) {
  return video.status === "in_progress" && video.total_steps > 1 && video.step != null
    ? `step ${video.step} of ${video.total_steps}` : null;
}
