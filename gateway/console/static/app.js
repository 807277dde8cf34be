// The console: sign-in, hash routing, and the four pages. Every API error shows its message.

import { ApiError, FINAL_JOB, auth, download, follow, isFinalBatch, pollUntilFinal, request } from "./api.js";
import { field, h, message, progressBar, replace, seconds, show, table, when } from "./dom.js";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOut = document.getElementById("sign-out");

// The parameters of the default extractive model. No endpoint lists what the configured model
// accepts, so these are offered and a refusal shows the API's own 422 message.
const PARAMS = [
  { name: "max_words", label: "Max words", hint: "Upper bound on the summary's length in words" },
  { name: "max_sentences", label: "Max sentences", hint: "Upper bound on the number of sentences" },
];
const UPLOAD_TYPES = [".txt", ".md", ".rst", ".html", ".htm", ".pdf", ".zip", ".jsonl"];
const JOB_STATUSES = ["queued", "running", "succeeded", "failed", "canceled"];

let openMode = false;
let current = null; // the AbortController of the page on screen

function showError(error) {
  if (error && error.name === "AbortError") return;
  show(banner, error instanceof Error ? error.message : String(error));
}

// --- sign in --------------------------------------------------------------------------------------

async function probe(withKey) {
  try {
    await request("/v1/summaries?limit=1", { withKey });
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return false;
    throw error;
  }
}

async function start() {
  try {
    if (await probe(false)) {
      openMode = true;
      auth.key = "";
      who.textContent = "Open mode (no API key needed)";
      return enter();
    }
    if (auth.key && (await probe(true))) return enter();
    auth.key = "";
    signInPage();
  } catch (error) {
    replace(main, h("h1", {}, "condense console"), h("p", { class: "error", role: "alert" }, error.message));
  }
}

function signInPage(note) {
  nav.hidden = true;
  signOut.hidden = true;
  who.textContent = "";
  const key = h("input", { type: "password", name: "api-key", autocomplete: "off", required: true, spellcheck: false });
  const problem = message();
  const form = h(
    "form",
    { class: "card narrow" },
    h("h1", {}, "Sign in"),
    h("p", {}, "This server needs an API key. It is kept in this tab only (sessionStorage)."),
    field("API key", key, "Create one with: condense keys create --tenant NAME"),
    problem,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    show(problem, "");
    auth.key = key.value.trim();
    try {
      if (await probe(true)) return enter();
      auth.key = "";
      show(problem, "That key was refused: invalid or revoked API key.");
    } catch (error) {
      auth.key = "";
      show(problem, error.message);
    }
  });
  replace(main, form);
  if (note) show(problem, note);
  key.focus();
}

function enter() {
  nav.hidden = false;
  signOut.hidden = openMode;
  if (!openMode) who.textContent = "Signed in with an API key";
  window.addEventListener("hashchange", route);
  route();
}

signOut.addEventListener("click", () => {
  auth.key = "";
  window.removeEventListener("hashchange", route);
  if (current) current.abort();
  location.hash = "";
  signInPage();
});

// --- routing --------------------------------------------------------------------------------------

const PAGES = {
  summarize: () => summarizePage(),
  batches: (id) => (id ? batchPage(id) : batchesPage()),
  jobs: (id) => (id ? jobPage(id) : jobsPage()),
  settings: () => settingsPage(),
};

function route() {
  if (current) current.abort();
  current = new AbortController();
  show(banner, "");
  const [, page = "summarize", id] = (location.hash || "#/summarize").split("/");
  const render = PAGES[page] || PAGES.summarize;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  replace(main);
  Promise.resolve(render(id ? decodeURIComponent(id) : undefined, current.signal)).catch(showError);
}

function onError(error) {
  if (error instanceof ApiError && error.status === 401 && !openMode) {
    auth.key = "";
    signInPage("Your API key was refused; sign in again.");
    return;
  }
  showError(error);
}

// --- shared pieces -------------------------------------------------------------------------------

function paramInputs() {
  const inputs = PARAMS.map((param) => ({
    param,
    input: h("input", { type: "number", min: 1, step: 1, inputmode: "numeric", name: param.name }),
  }));
  return {
    node: h(
      "fieldset",
      { class: "params" },
      h("legend", {}, "Parameters"),
      inputs.map(({ param, input }) => field(param.label, input, param.hint)),
    ),
    values() {
      const params = {};
      for (const { param, input } of inputs) {
        if (input.value.trim() !== "") params[param.name] = Number(input.value);
      }
      return params;
    },
  };
}

function statusBadge(status) {
  return h("span", { class: `badge ${status}` }, status.replace("_", " "));
}

function keyValues(object) {
  return h(
    "ul",
    { class: "keyvalues" },
    Object.entries(object).map(([key, value]) =>
      h("li", {}, h("span", { class: "muted" }, `${key}: `), h("code", {}, typeof value === "string" ? value : JSON.stringify(value))),
    ),
  );
}

function jobLink(id) {
  return h("a", { href: `#/jobs/${encodeURIComponent(id)}` }, id);
}

// --- summarize ------------------------------------------------------------------------------------

function summarizePage() {
  const signal = current.signal;
  const text = h("textarea", { name: "text", rows: 10 });
  const file = h("input", { type: "file", name: "file", accept: ".txt,.md,.rst" });
  const mode = h(
    "select",
    { name: "mode" },
    ["auto", "sync", "async"].map((value) => h("option", { value }, value)),
  );
  const params = paramInputs();
  const problem = message();
  const result = h("section", { class: "result", "aria-live": "polite" });
  const drop = h("div", { class: "drop" }, h("p", {}, "Drop a text file here, or choose one:"), field("Text file", file));

  const load = async (chosen) => {
    if (!chosen) return;
    if (!/\.(txt|md|rst)$/i.test(chosen.name)) {
      show(problem, `${chosen.name}: only .txt, .md and .rst files are read here; send PDFs and HTML as a batch.`);
      return;
    }
    text.value = await chosen.text();
    show(problem, "");
  };
  file.addEventListener("change", () => load(file.files[0]));
  dropTarget(drop, (files) => load(files[0]));

  const form = h(
    "form",
    { class: "card" },
    h("h1", {}, "Summarize"),
    field("Text", text, "Paste a document, or drop a file below"),
    drop,
    params.node,
    field("Mode", mode, "auto answers short texts at once and queues long ones"),
    problem,
    h("button", { type: "submit" }, "Summarize"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    show(problem, "");
    replace(result);
    if (!text.value.trim()) return show(problem, "Paste some text or choose a file first.");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await request("/v1/summaries", {
        method: "POST",
        json: { text: text.value, params: params.values(), mode: mode.value },
        signal,
      });
      renderJobResult(result, job, signal);
    } catch (error) {
      if (error.name !== "AbortError") show(problem, error.message);
    } finally {
      button.disabled = false;
    }
  });
  replace(main, form, result);
}

function renderJobResult(node, job, signal) {
  const state = h("p", { class: "status" });
  const bar = progressBar("Job progress");
  const summary = h("blockquote", { class: "summary", hidden: true });
  const update = (json) => {
    replace(state, "Job ", jobLink(json.id), " ", statusBadge(json.status));
    bar.set(json.progress.done, json.progress.total);
    if (json.summary) {
      summary.textContent = json.summary;
      summary.hidden = false;
    }
    if (json.error) show(banner, `${json.error.code}: ${json.error.message}`);
  };
  replace(node, h("h2", {}, "Result"), state, bar.node, summary);
  update(job);
  if (!FINAL_JOB.has(job.status)) {
    follow({
      stream: `/v1/summaries/${job.id}/events`,
      poll: () => request(`/v1/summaries/${job.id}`, { signal }),
      isFinal: (json) => FINAL_JOB.has(json.status),
      onUpdate: update,
      onError,
      signal,
    });
  }
}

// --- drag and drop --------------------------------------------------------------------------------

function dropTarget(node, onFiles) {
  node.addEventListener("dragover", (event) => {
    event.preventDefault();
    node.classList.add("over");
  });
  node.addEventListener("dragleave", () => node.classList.remove("over"));
  node.addEventListener("drop", async (event) => {
    event.preventDefault();
    node.classList.remove("over");
    onFiles(await droppedFiles(event.dataTransfer));
  });
}

// Files of a drop, folders walked recursively; each file keeps its path for the batch's custom_id.
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...transfer.files].map((file) => ({ file, path: file.name }));
  const found = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      found.push({ file, path: prefix + file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry, "");
  return found;
}

// --- batches --------------------------------------------------------------------------------------

function extensionOf(name) {
  const base = name.split("/").pop();
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(dot).toLowerCase() : "";
}

function batchesPage() {
  const signal = current.signal;
  let chosen = []; // {file, path, error}
  const files = h("input", { type: "file", name: "files", multiple: true, accept: UPLOAD_TYPES.join(",") });
  const folder = h("input", { type: "file", name: "folder", webkitdirectory: true, multiple: true });
  const list = h("ul", { class: "files", "aria-label": "Files to upload" });
  const params = paramInputs();
  const problem = message();
  const upload = h("button", { type: "submit", disabled: true }, "Upload");
  const clear = h("button", { type: "button", class: "secondary", disabled: true }, "Clear");

  const renderList = () => {
    replace(
      list,
      chosen.map((item, index) =>
        h(
          "li",
          { class: item.error ? "bad" : "" },
          h("span", { class: "name" }, item.path),
          h("span", { class: "size" }, ` ${(item.file.size / 1024).toFixed(1)} KiB`),
          item.error ? h("span", { class: "file-error", role: "alert" }, item.error) : null,
          h(
            "button",
            {
              type: "button",
              class: "link",
              "aria-label": `Remove ${item.path}`,
              onclick: () => {
                chosen.splice(index, 1);
                renderList();
              },
            },
            "Remove",
          ),
        ),
      ),
    );
    upload.disabled = !chosen.length || chosen.some((item) => item.error);
    clear.disabled = !chosen.length;
  };
  const add = (items) => {
    for (const { file, path } of items) {
      const ext = extensionOf(path);
      const error = UPLOAD_TYPES.includes(ext)
        ? null
        : `unsupported file type (${ext || "no extension"}); accepted: ${UPLOAD_TYPES.join(", ")}`;
      chosen.push({ file, path, error });
    }
    show(problem, "");
    renderList();
  };
  files.addEventListener("change", () => {
    add([...files.files].map((file) => ({ file, path: file.name })));
    files.value = "";
  });
  folder.addEventListener("change", () => {
    add([...folder.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
    folder.value = "";
  });
  clear.addEventListener("click", () => {
    chosen = [];
    show(problem, "");
    renderList();
  });

  const drop = h(
    "div",
    { class: "drop" },
    h("p", {}, "Drop files, a folder, a .zip or a .jsonl here, or choose them:"),
    field("Files", files),
    field("A folder", folder),
  );
  dropTarget(drop, add);

  const form = h(
    "form",
    { class: "card" },
    h("h1", {}, "Batches"),
    drop,
    list,
    params.node,
    problem,
    h("div", { class: "buttons" }, upload, clear),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    show(problem, "");
    const body = new FormData();
    for (const item of chosen) body.append("files", item.file, item.path);
    const values = params.values();
    if (Object.keys(values).length) body.append("params", JSON.stringify(values));
    upload.disabled = true;
    try {
      const batch = await request("/v1/batches", { method: "POST", body, signal });
      location.hash = `#/batches/${encodeURIComponent(batch.id)}`;
    } catch (error) {
      if (error.name === "AbortError") return;
      // The API refuses the upload whole and names the file at fault first: mark that file.
      const named = chosen.find((item) => error.message.startsWith(`${item.path}:`));
      if (named) {
        named.error = error.message.slice(named.path.length + 1).trim();
        renderList();
      }
      show(problem, `Nothing was uploaded: ${error.message}`);
      if (!named) upload.disabled = false;
    }
  });

  const listing = h("section", { class: "card" }, h("h2", {}, "Recent batches"));
  replace(main, form, listing);
  return pagedList(listing, signal, {
    path: (cursor) => `/v1/batches?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
    headers: ["Batch", "Status", "Progress", "Created"],
    row: (batch) => {
      const done = batch.counts.succeeded + batch.counts.failed + batch.counts.canceled;
      const bar = progressBar(`Progress of batch ${batch.id}`);
      bar.set(done, batch.counts.total);
      return h(
        "tr",
        {},
        h("td", {}, h("a", { href: `#/batches/${encodeURIComponent(batch.id)}` }, batch.id)),
        h("td", {}, statusBadge(batch.status)),
        h("td", {}, bar.node),
        h("td", {}, when(batch.created_at)),
      );
    },
    empty: "No batches yet.",
  });
}

// A table over a cursor-paged list, with Previous/Next.
async function pagedList(container, signal, { path, headers, row, empty }) {
  const cursors = [null];
  const body = h("tbody");
  const previous = h("button", { type: "button", class: "secondary" }, "Previous page");
  const next = h("button", { type: "button", class: "secondary" }, "Next page");
  const status = h("p", { class: "muted", role: "status" });
  let nextCursor = null;
  const load = async () => {
    try {
      const page = await request(path(cursors.at(-1)), { signal });
      replace(body, page.data.map(row));
      nextCursor = page.next_cursor;
      next.disabled = !nextCursor;
      previous.disabled = cursors.length < 2;
      status.textContent = page.data.length ? `Page ${cursors.length}` : empty;
    } catch (error) {
      onError(error);
    }
  };
  next.addEventListener("click", () => {
    cursors.push(nextCursor);
    load();
  });
  previous.addEventListener("click", () => {
    cursors.pop();
    load();
  });
  container.append(table(headers, body), status, h("div", { class: "buttons" }, previous, next));
  await load();
  return load;
}

async function batchPage(id) {
  const signal = current.signal;
  const path = `/v1/batches/${encodeURIComponent(id)}`;
  const state = h("p", { class: "status" });
  const counts = h("p", { class: "muted" });
  const bar = progressBar("Batch progress");
  const cancel = h("button", { type: "button", class: "danger" }, "Cancel batch");
  const jsonl = h("button", { type: "button", class: "secondary" }, "Download JSONL");
  const csv = h("button", { type: "button", class: "secondary" }, "Download CSV");
  const rows = h("tbody");
  const seen = new Map(); // custom_id -> row

  const addResult = (result) => {
    const summary = result.summary || (result.error ? `${result.error.code}: ${result.error.message}` : "");
    const tr = h(
      "tr",
      { "data-custom-id": result.custom_id },
      h("td", {}, result.custom_id),
      h("td", {}, statusBadge(result.status)),
      h("td", { class: "excerpt" }, summary),
      h("td", {}, jobLink(result.job_id)),
    );
    const old = seen.get(result.custom_id);
    if (old) old.replaceWith(tr);
    else rows.append(tr);
    seen.set(result.custom_id, tr);
  };
  const loadResults = async () => {
    const response = await request(`${path}/results`, { raw: true, signal });
    for (const line of (await response.text()).split("\n")) {
      if (line.trim()) addResult(JSON.parse(line));
    }
  };
  let finished = -1;
  const update = (batch) => {
    const c = batch.counts;
    const done = c.succeeded + c.failed + c.canceled;
    replace(state, "Batch ", h("code", {}, batch.id), " ", statusBadge(batch.status));
    counts.textContent = `${c.total} documents: ${c.queued} queued, ${c.running} running, ${c.succeeded} succeeded, ${c.failed} failed, ${c.canceled} canceled`;
    bar.set(done, c.total);
    cancel.hidden = isFinalBatch(batch);
    // Without document events (polling), the table is refreshed whenever more documents finished.
    if (done !== finished) {
      finished = done;
      if (!streaming) loadResults().catch(onError);
    }
  };
  let streaming = false;

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      update(await request(`${path}/cancel`, { method: "POST", signal }));
      await loadResults();
    } catch (error) {
      onError(error);
    } finally {
      cancel.disabled = false;
    }
  });
  jsonl.addEventListener("click", () => download(`${path}/results`, `batch-${id}.jsonl`, signal).catch(onError));
  csv.addEventListener("click", () => download(`${path}/results?format=csv`, `batch-${id}.csv`, signal).catch(onError));

  replace(
    main,
    h(
      "section",
      { class: "card" },
      h("h1", {}, "Batch"),
      state,
      bar.node,
      counts,
      h("div", { class: "buttons" }, cancel, jsonl, csv),
    ),
    h("section", { class: "card" }, h("h2", {}, "Results"), table(["Document", "Status", "Summary", "Job"], rows)),
  );
  const batch = await request(path, { signal });
  update(batch);
  if (isFinalBatch(batch)) return;
  await follow({
    stream: `${path}/events`,
    poll: () => request(path, { signal }),
    isFinal: isFinalBatch,
    onUpdate: (json) => {
      update(json);
      if (isFinalBatch(json)) loadResults().catch(onError);
    },
    onDocument: (job) => {
      streaming = true;
      addResult({ ...job, job_id: job.id });
    },
    onError,
    signal,
  });
}

// --- jobs -----------------------------------------------------------------------------------------

function jobsPage() {
  const signal = current.signal;
  const filter = h(
    "select",
    { name: "status" },
    h("option", { value: "" }, "any"),
    JOB_STATUSES.map((value) => h("option", { value }, value)),
  );
  const section = h("section", { class: "card" }, h("h1", {}, "Jobs"), field("Status", filter));
  replace(main, section);
  let listing = null;
  const render = () => {
    if (listing) listing.remove();
    listing = h("div");
    section.append(listing);
    const status = filter.value;
    return pagedList(listing, signal, {
      path: (cursor) =>
        `/v1/summaries?limit=20${status ? `&status=${status}` : ""}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      headers: ["Job", "Status", "Document", "Created"],
      row: (job) =>
        h(
          "tr",
          {},
          h("td", {}, jobLink(job.id)),
          h("td", {}, statusBadge(job.status)),
          h("td", {}, job.custom_id || (job.batch_id ? "" : job.route)),
          h("td", {}, when(job.created_at)),
        ),
      empty: status ? `No ${status} jobs.` : "No jobs yet.",
    });
  };
  filter.addEventListener("change", render);
  return render();
}

async function jobPage(id) {
  const signal = current.signal;
  const path = `/v1/summaries/${encodeURIComponent(id)}`;
  const details = h("dl", { class: "details" });
  const bar = progressBar("Job progress");
  const summary = h("blockquote", { class: "summary" });
  const cancel = h("button", { type: "button", class: "danger" }, "Cancel job");
  const deliveries = h("section", { class: "card" }, h("h2", {}, "Deliveries"));

  const row = (term, value) => [h("dt", {}, term), h("dd", {}, value)];
  const update = (job) => {
    replace(
      details,
      row("Status", statusBadge(job.status)),
      row("Route", job.route),
      job.batch_id ? row("Batch", h("a", { href: `#/batches/${encodeURIComponent(job.batch_id)}` }, job.batch_id)) : null,
      job.custom_id ? row("Document", job.custom_id) : null,
      row("Created", when(job.created_at)),
      row("Started", when(job.started_at)),
      row("Finished", when(job.finished_at)),
      row("Waited in queue", seconds(job.created_at, job.started_at)),
      row("Ran for", seconds(job.started_at, job.finished_at)),
      row("Attempts", String(job.attempts)),
      row("Language", job.language || "—"),
      row("Model", job.model ? keyValues(job.model) : "—"),
      row("Parameters", h("code", {}, JSON.stringify(job.params))),
      job.error ? row("Error", h("span", { class: "error" }, `${job.error.code}: ${job.error.message}`)) : null,
    );
    bar.set(job.progress.done, job.progress.total);
    summary.textContent = job.summary || (FINAL_JOB.has(job.status) ? "No summary." : "Not finished yet.");
    cancel.hidden = FINAL_JOB.has(job.status);
  };
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      update(await request(`${path}/cancel`, { method: "POST", signal }));
    } catch (error) {
      onError(error);
    } finally {
      cancel.disabled = false;
    }
  });

  replace(
    main,
    h("section", { class: "card" }, h("h1", {}, "Job ", h("code", {}, id)), bar.node, details, h("h2", {}, "Summary"), summary, h("div", { class: "buttons" }, cancel)),
    deliveries,
  );
  const job = await request(path, { signal });
  update(job);
  const deliveryLog = await renderDeliveries(deliveries, path, signal);
  if (!FINAL_JOB.has(job.status)) {
    await follow({
      stream: `${path}/events`,
      poll: () => request(path, { signal }),
      isFinal: (json) => FINAL_JOB.has(json.status),
      onUpdate: (json) => {
        update(json);
        if (FINAL_JOB.has(json.status)) deliveryLog().catch(onError);
      },
      onError,
      signal,
    });
  }
}

async function renderDeliveries(section, path, signal) {
  const body = h("tbody");
  const note = h("p", { class: "muted", role: "status" });
  section.append(table(["Event", "Channel", "Target", "Status", "Attempts", ""], body), note);
  const load = async () => {
    const { data } = await request(`${path}/deliveries`, { signal });
    note.textContent = data.length ? "" : "No notifications for this job (no webhook or e-mail).";
    replace(
      body,
      data.map((delivery) => {
        const redeliver = h("button", { type: "button", class: "secondary" }, "Redeliver");
        redeliver.setAttribute("aria-label", `Redeliver ${delivery.event_type} to ${delivery.target}`);
        redeliver.addEventListener("click", async () => {
          redeliver.disabled = true;
          try {
            await request(`/v1/deliveries/${encodeURIComponent(delivery.id)}/redeliver`, { method: "POST", signal });
            note.textContent = "Queued for redelivery.";
            await load();
          } catch (error) {
            onError(error);
            redeliver.disabled = false;
          }
        });
        const attempts = h(
          "ul",
          { class: "attempts" },
          delivery.attempts.map((a) =>
            h(
              "li",
              {},
              `${when(a.attempted_at)}: ${a.succeeded ? "ok" : "failed"}`,
              a.status_code ? ` (HTTP ${a.status_code})` : "",
              a.latency_ms !== null && a.latency_ms !== undefined ? `, ${a.latency_ms} ms` : "",
              a.error ? ` ${a.error}` : "",
            ),
          ),
        );
        return h(
          "tr",
          {},
          h("td", {}, delivery.event_type),
          h("td", {}, delivery.channel),
          h("td", { class: "excerpt" }, delivery.target),
          h("td", {}, statusBadge(delivery.status)),
          h("td", {}, delivery.attempts.length ? attempts : "none yet"),
          h("td", {}, redeliver),
        );
      }),
    );
  };
  await load().catch(onError);
  return load;
}

// --- settings -------------------------------------------------------------------------------------

async function settingsPage() {
  const signal = current.signal;
  const shown = h("div", { class: "endpoint", "aria-live": "polite" });
  const url = h("input", { type: "url", name: "url", required: true, placeholder: "https://example.com/hooks/condense" });
  const secret = h("input", { type: "text", name: "secret", spellcheck: false, autocomplete: "off", placeholder: "whsec_…" });
  const problem = message();
  const done = message("note");
  const rotate = h("button", { type: "button", class: "secondary" }, "Rotate secret");
  const remove = h("button", { type: "button", class: "danger" }, "Remove endpoint");
  const test = h("button", { type: "button", class: "secondary" }, "Send test event");
  let endpoint = null;

  const render = () => {
    rotate.disabled = remove.disabled = test.disabled = !endpoint;
    if (!endpoint) return replace(shown, h("p", {}, "No default webhook endpoint is set."));
    if (!url.value) url.value = endpoint.url;
    replace(
      shown,
      h(
        "dl",
        { class: "details" },
        h("dt", {}, "URL"),
        h("dd", {}, h("code", {}, endpoint.url)),
        h("dt", {}, "Signing secret"),
        h("dd", {}, h("code", { class: "secret" }, endpoint.secret)),
        h("dt", {}, "Updated"),
        h("dd", {}, when(endpoint.updated_at)),
      ),
    );
  };
  const act = async (what, work) => {
    show(problem, "");
    show(done, "");
    try {
      await work();
      if (what) show(done, what);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) onError(error);
      else if (error.name !== "AbortError") show(problem, error.message);
    }
  };
  const form = h(
    "form",
    { class: "card" },
    h("h2", {}, "Set the endpoint"),
    field("Webhook URL", url),
    field("Signing secret (optional)", secret, "Leave empty and the server makes a new whsec_ secret"),
    problem,
    done,
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Save endpoint"), rotate, remove, test),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act("Endpoint saved.", async () => {
      const json = { url: url.value.trim() };
      if (secret.value.trim()) json.secret = secret.value.trim();
      endpoint = await request("/v1/webhook-endpoint", { method: "PUT", json, signal });
      secret.value = "";
      render();
    });
  });
  rotate.addEventListener("click", () =>
    act("Secret rotated: update your receiver.", async () => {
      endpoint = await request("/v1/webhook-endpoint", { method: "PUT", json: { url: endpoint.url }, signal });
      render();
    }),
  );
  remove.addEventListener("click", () =>
    act("Endpoint removed.", async () => {
      await request("/v1/webhook-endpoint", { method: "DELETE", signal });
      endpoint = null;
      url.value = "";
      render();
    }),
  );
  test.addEventListener("click", () =>
    act("", async () => {
      const queued = await request("/v1/webhook-endpoint/test", { method: "POST", signal });
      show(done, `Test event ${queued.event_id} queued; waiting for the notifier…`);
      // The notifier sends it like any event; its first attempt tells whether the endpoint works.
      await pollUntilFinal({
        poll: () => request(`/v1/deliveries/${encodeURIComponent(queued.id)}`, { signal }),
        isFinal: (delivery) => delivery.attempts.length > 0,
        onUpdate: (delivery) => {
          const attempt = delivery.attempts.at(-1);
          if (!attempt) return;
          if (attempt.succeeded) {
            show(done, `Test event delivered: HTTP ${attempt.status_code} in ${attempt.latency_ms} ms.`);
          } else {
            show(done, "");
            const code = attempt.status_code ? ` (HTTP ${attempt.status_code})` : "";
            show(problem, `Test event not delivered${code}: ${attempt.error || "refused"}. Retries follow the usual schedule.`);
          }
        },
        onError: (error) => show(problem, error.message),
        signal,
      });
    }),
  );

  replace(
    main,
    h("section", { class: "card" }, h("h1", {}, "Settings"), h("h2", {}, "Default webhook endpoint"), shown),
    form,
  );
  try {
    endpoint = await request("/v1/webhook-endpoint", { signal });
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "not_found")) throw error;
  }
  render();
}

start();
