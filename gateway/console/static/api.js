// The /v1 API as the console uses it: one fetch wrapper, errors as their `error.message`,
// and live updates from the event streams with a polling fallback.

const KEY_STORAGE = "condense.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const auth = {
  get key() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  },
};

function headersFor(extra, withKey = true) {
  const headers = new Headers(extra || {});
  if (withKey && auth.key) headers.set("Authorization", `Bearer ${auth.key}`);
  return headers;
}

async function errorFrom(response) {
  let text = "";
  try {
    text = await response.text();
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) {
      return new ApiError(response.status, body.error.code || "error", body.error.message);
    }
  } catch {
    // Not the API's JSON error (a proxy page, an empty body): fall through to the status line.
  }
  const detail = text && text.length < 300 ? `: ${text}` : "";
  return new ApiError(response.status, "http_error", `HTTP ${response.status} ${response.statusText}${detail}`);
}

export async function request(path, { method = "GET", json, body, headers, signal, raw = false, withKey = true } = {}) {
  const sent = headersFor(headers, withKey);
  if (json !== undefined) {
    sent.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, body, headers: sent, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", `Cannot reach the API: ${error.message}`);
  }
  if (!response.ok) throw await errorFrom(response);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export const FINAL_JOB = new Set(["succeeded", "failed", "canceled"]);
export const isFinalBatch = (batch) => batch.status !== "in_progress";

// Parses a text/event-stream body: calls onEvent(type, data, id) per event; resolves at its end.
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  let id = "";
  const dispatch = () => {
    if (data.length) onEvent(type || "message", data.join("\n"), id);
    type = "";
    data = [];
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        dispatch();
        continue;
      }
      if (line.startsWith(":")) continue; // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
  }
  dispatch();
}

// Streams answering 404 are not deployed on this server: remembered for the page's life so that
// every later view polls at once instead of asking again.
let streamsMissing = false;
export const POLL_INTERVAL_MS = 1000;

/**
 * Follows a job or batch until it is final.
 * `stream`: the events path; `poll`: () => Promise of the public JSON; `isFinal`: (json) => bool;
 * handlers: onUpdate(json) for status/progress/end, onDocument(jobJson) for a batch's documents,
 * onError(error). Stops when `signal` aborts.
 */
export async function follow({ stream, poll, isFinal, onUpdate, onDocument, onError, signal }) {
  if (!streamsMissing) {
    try {
      const response = await request(stream, { headers: { Accept: "text/event-stream" }, signal, raw: true });
      let ended = false;
      await readEvents(response.body, (type, data) => {
        if (type === "document") {
          if (onDocument) onDocument(JSON.parse(data));
          return;
        }
        if (type === "status" || type === "progress" || type === "end") {
          const json = JSON.parse(data);
          onUpdate(json);
          if (type === "end" || isFinal(json)) ended = true;
        }
      });
      if (ended || signal.aborted) return;
      // The stream closed early (a restart, a proxy timeout): polling finishes the job.
    } catch (error) {
      if (error.name === "AbortError" || signal.aborted) return;
      if (error instanceof ApiError && error.status === 404) {
        streamsMissing = true;
      } else if (!(error instanceof TypeError)) {
        onError(error);
        return;
      }
    }
  }
  await pollUntilFinal({ poll, isFinal, onUpdate, onError, signal });
}

export async function pollUntilFinal({ poll, isFinal, onUpdate, onError, signal }) {
  for (;;) {
    if (signal.aborted) return;
    try {
      const json = await poll();
      if (signal.aborted) return;
      onUpdate(json);
      if (isFinal(json)) return;
    } catch (error) {
      if (error.name === "AbortError" || signal.aborted) return;
      onError(error);
      return;
    }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, POLL_INTERVAL_MS);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

// Downloads an authenticated resource as a file (a plain link could not send the key).
export async function download(path, filename, signal) {
  const response = await request(path, { raw: true, signal });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
