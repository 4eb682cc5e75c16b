// The page's only way to the service: its public HTTP API, with the key as a Bearer header (never in a URL).
// Everything here is what any other client could do, so the page can never do more than a client can.

const KEY_STORAGE = "kinema.apiKey";

/** An error answer of the API, in its {"error": {message, type, param, code}} shape. */
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `the server answered ${status}`);
    this.status = status;
    this.param = err.param || null;
    this.code = err.code || null;
  }
}

export const keyStore = {
  get() {
    try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  },
  set(value) {
    try { value ? localStorage.setItem(KEY_STORAGE, value) : localStorage.removeItem(KEY_STORAGE); } catch { /* private mode */ }
  },
};

function headers(extra = {}) {
  const key = keyStore.get();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

async function answer(res) {
  if (res.ok) return res.status === 204 ? null : res.json();
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  throw new ApiError(res.status, body);
}

export async function get(path) {
  return answer(await fetch(path, { headers: headers() }));
}

export async function post(path, body) {
  return answer(await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body ?? {}),
  }));
}

/** A multipart POST (image-to-video uploads); `form` is a FormData. */
export async function postForm(path, form) {
  return answer(await fetch(path, { method: "POST", headers: headers(), body: form }));
}

export async function del(path) {
  return answer(await fetch(path, { method: "DELETE", headers: headers() }));
}

/** A file of a job (video or thumbnail) as an object URL: media elements cannot send the key themselves. */
export async function blobUrl(path) {
  const res = await fetch(path, { headers: headers() });
  if (!res.ok) await answer(res);
  return URL.createObjectURL(await res.blob());
}

/** A file of a job as a Blob (the start image of an image-to-video job, to send it again). */
export async function blob(path) {
  const res = await fetch(path, { headers: headers() });
  if (!res.ok) await answer(res);
  return res.blob();
}

/**
 * Follow a job's Server-Sent Events (GET /v1/videos/{id}/events) with fetch, since EventSource cannot send the
 * key. Calls onEvent(type, video) for every event; resolves when the stream ends; `signal` aborts it.
 */
export async function streamEvents(id, onEvent, signal) {
  const res = await fetch(`/v1/videos/${encodeURIComponent(id)}/events`, { headers: headers(), signal });
  if (!res.ok) await answer(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) {
        let parsed = null;
        try { parsed = JSON.parse(data.join("\n")); } catch { continue; }
        onEvent(type, parsed);
      }
    }
  }
}
