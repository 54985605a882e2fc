// The migration console: a page of plain JavaScript (no framework, no build
// step, nothing loaded from elsewhere) over the public API of this server.
// It signs in with an entity id and an API key kept in sessionStorage, lists
// the entity's jobs with live progress, shows a job's errors and downloads
// them as CSV, and shows the reconciliation counts and the trial balance.
//
// Every value from the API is put on the page with textContent, never as
// HTML, so record data (external ids, error messages) cannot inject markup;
// the server's Content-Security-Policy forbids inline script besides.

"use strict";

const STORAGE_ENTITY = "arcus.console.entity_id";
const STORAGE_KEY = "arcus.console.api_key";
/** How often the jobs view is refreshed while a job is pending or running. */
const POLL_MS = 2000;
/** How often it looks for new jobs otherwise (a job submitted elsewhere). */
const IDLE_POLL_MS = 15000;
/** How far back the rate of a running job looks. */
const RATE_WINDOW_MS = 10000;
const PAGE = 20;
const ERRORS_PAGE = 100;
const TERMINAL = new Set(["completed", "partial", "failed"]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What a client can do about an error, by its code, beyond the API's message. */
const ADVICE = {
  missing_api_key: () => "Sign in with an API key.",
  invalid_api_key: () =>
    "The API key is unknown or was revoked: check it, or ask for a new one.",
  api_key_expired: () => "The API key has expired: ask for a new one.",
  entity_access_denied: () =>
    "The API key belongs to another entity: check the entity id.",
  ip_not_allowlisted: () =>
    "The API key may not be used from this network (its IP allowlist).",
  insufficient_scope: (body) =>
    `The API key lacks the scope ${body.required ?? "this needs"}; ask for a key that has it.`,
  rate_limit_exceeded: () =>
    "Too many requests with this key; the console tries again shortly.",
};

const $ = (id) => document.getElementById(id);

/**
 * An error answer of the API (its documented envelope: `error` the key,
 * `hint` the sentence), or a network failure.
 */
class ApiError extends Error {
  constructor(status, body, requestId, retryAfter) {
    super(body.hint ?? body.error ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.requestId = body.request_id ?? requestId ?? null;
    this.retryAfter = retryAfter;
  }
}

// ---------------------------------------------------------------- session

function currentSession() {
  const entity = sessionStorage.getItem(STORAGE_ENTITY);
  const key = sessionStorage.getItem(STORAGE_KEY);
  return entity && key ? { entity, key } : null;
}

/** A request to `/v1/entities/{entity}{path}`; throws an ApiError unless 2xx. */
async function api(path, credentials = currentSession()) {
  if (!credentials) {
    throw new ApiError(401, {
      error: "missing_api_key",
      code: "missing_api_key",
      hint: "not signed in",
    });
  }
  let response;
  try {
    response = await fetch(
      `/v1/entities/${encodeURIComponent(credentials.entity)}${path}`,
      {
        headers: { Authorization: `Bearer ${credentials.key}` },
        cache: "no-store",
      },
    );
  } catch (e) {
    throw new ApiError(0, {
      error: "network_error",
      code: "network_error",
      hint: `could not reach the API (${e.message})`,
    });
  }
  if (!response.ok) {
    throw await errorOf(response);
  }
  return response;
}

async function getJson(path, credentials) {
  const response = await api(path, credentials);
  return response.json();
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not the envelope (a proxy's page, say): describe the status alone.
  }
  if (!body || typeof body !== "object" || typeof body.error !== "string") {
    body = { hint: `HTTP ${response.status} ${response.statusText}`.trim() };
  }
  const retryAfter = Number(response.headers.get("retry-after")) || null;
  return new ApiError(
    response.status,
    body,
    response.headers.get("x-request-id"),
    retryAfter,
  );
}

/** Renders an error into `box`: what failed, the API's message, its fields. */
function showError(box, error, doing) {
  box.replaceChildren();
  const body = error instanceof ApiError ? error.body : { hint: String(error) };
  const title = document.createElement("strong");
  title.textContent = `${doing} failed: ${body.hint ?? body.error}`;
  box.append(title);
  const advice = ADVICE[body.code];
  if (advice) {
    const p = document.createElement("div");
    p.className = "advice";
    p.textContent = advice(body);
    box.append(p);
  }
  const fields = [
    ["HTTP status", error.status ? String(error.status) : null],
    ["code", body.code],
    ["type", body.type],
    ["param", body.param],
    ["required scope", body.required],
    ["request id", error.requestId],
  ].filter(([, value]) => value !== undefined && value !== null && value !== "");
  if (fields.length > 0) {
    const dl = document.createElement("dl");
    for (const [name, value] of fields) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dl.append(dt, dd);
    }
    box.append(dl);
  }
  box.hidden = false;
}

function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
}

const banner = {
  show: (error, doing) => showError($("banner"), error, doing),
  clear: () => clearError($("banner")),
};

async function signIn(event) {
  event.preventDefault();
  const box = $("sign-in-error");
  clearError(box);
  const entity = $("entity-id").value.trim();
  const key = $("api-key").value.trim();
  if (!UUID.test(entity)) {
    showError(
      box,
      new ApiError(0, {
        error: "invalid_parameter",
        hint: "the entity id must be a UUID, like 01890a5d-ac96-774b-bcce-b302099a8057",
        param: "entity_id",
      }),
      "Signing in",
    );
    return;
  }
  const button = $("sign-in-submit");
  button.disabled = true;
  try {
    // The key is tried before it is kept. A key that is valid for the entity
    // but lacks migration:read still signs in: the views say what it lacks.
    await getJson("/migration/jobs?limit=1", { entity, key });
  } catch (e) {
    const validKey =
      e instanceof ApiError &&
      ((e.status === 403 && e.body.code === "insufficient_scope") || e.status === 429);
    if (!validKey) {
      showError(box, e, "Signing in");
      return;
    }
  } finally {
    button.disabled = false;
  }
  sessionStorage.setItem(STORAGE_ENTITY, entity);
  sessionStorage.setItem(STORAGE_KEY, key);
  $("api-key").value = "";
  if (location.hash === "" || location.hash === "#/jobs") {
    route();
  } else {
    location.hash = "#/jobs";
  }
}

function signOut() {
  sessionStorage.removeItem(STORAGE_ENTITY);
  sessionStorage.removeItem(STORAGE_KEY);
  stopPolling();
  jobs.reset();
  $("jobs-body").replaceChildren();
  $("errors-body").replaceChildren();
  $("counts-body").replaceChildren();
  $("tb-body").replaceChildren();
  banner.clear();
  history.replaceState(null, "", location.pathname);
  route();
}

// ----------------------------------------------------------------- routing

const VIEWS = ["sign-in-view", "jobs-view", "errors-view", "reconciliation-view"];

function showView(id) {
  for (const view of VIEWS) {
    $(view).hidden = view !== id;
  }
  const name = id.replace("-view", "");
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle(
      "active",
      link.dataset.view === name || (name === "errors" && link.dataset.view === "jobs"),
    );
  }
}

function route() {
  const session = currentSession();
  $("nav").hidden = !session;
  $("session").hidden = !session;
  banner.clear();
  if (!session) {
    stopPolling();
    showView("sign-in-view");
    $("entity-id").focus();
    return;
  }
  $("session-entity").textContent = session.entity;
  const mode = session.key.startsWith("ark_live_")
    ? "live"
    : session.key.startsWith("ark_test_")
      ? "test"
      : "";
  $("session-mode").textContent = mode ? `${mode} mode` : "";
  $("session-mode").hidden = !mode;

  const hash = location.hash;
  const errors = hash.match(/^#\/jobs\/([0-9a-f-]{36})\/errors$/i);
  if (errors) {
    stopPolling();
    showView("errors-view");
    openErrors(errors[1]);
  } else if (hash === "#/reconciliation") {
    stopPolling();
    showView("reconciliation-view");
    loadReconciliation();
  } else {
    showView("jobs-view");
    loadJobs("reset");
  }
}

// -------------------------------------------------------------------- jobs

const jobs = {
  list: [],
  hasMore: false,
  nextCursor: null,
  /** Per running job, recent observations {t, processed} for its rate. */
  samples: new Map(),
  rows: new Map(),
  timer: null,
  /** Loads in flight: a poll waits for them rather than race them. */
  loading: 0,
  /** Bumped on every reset, so an answer to an older query is dropped. */
  generation: 0,
  reset() {
    this.list = [];
    this.hasMore = false;
    this.nextCursor = null;
    this.samples.clear();
    this.rows.clear();
    this.generation += 1;
  },
};

function filterQuery() {
  const params = new URLSearchParams();
  const resource = $("filter-resource").value;
  const status = $("filter-status").value;
  if (resource) params.set("resource", resource);
  if (status) params.set("status", status);
  return params;
}

function stopPolling() {
  clearTimeout(jobs.timer);
  jobs.timer = null;
  $("jobs-live").textContent = "";
}

/**
 * Loads jobs: "reset" the first page (new filters), "more" the next page, or
 * "refresh" what is shown (the poll). A refresh re-reads the first page as
 * long as everything shown (up to 100 jobs) fits in it, so new jobs appear
 * and the paging cursor stays right; past that it updates the first 100.
 */
async function loadJobs(mode) {
  if (mode === "reset") {
    stopPolling();
    jobs.reset();
    $("jobs-body").replaceChildren();
  }
  const generation = jobs.generation;
  const params = filterQuery();
  if (mode === "more") {
    params.set("limit", String(PAGE));
    params.set("starting_after", jobs.nextCursor);
  } else {
    params.set("limit", String(Math.min(100, Math.max(PAGE, jobs.list.length))));
  }
  let page;
  jobs.loading += 1;
  try {
    page = await getJson(`/migration/jobs?${params}`);
  } catch (e) {
    if (generation !== jobs.generation) return;
    banner.show(e, "Loading the jobs");
    // Keep polling through a passing failure, but not with a key that no
    // longer works; after a 429, wait as long as the API asks.
    if (mode === "refresh" && e.status !== 401 && e.status !== 403) {
      schedulePoll(e.retryAfter ? e.retryAfter * 1000 : undefined);
    }
    return;
  } finally {
    jobs.loading -= 1;
  }
  if (generation !== jobs.generation) return;
  banner.clear();
  const now = performance.now();
  for (const job of page.data) {
    observe(job, now);
  }
  if (mode === "more") {
    const known = new Set(jobs.list.map((j) => j.id));
    jobs.list.push(...page.data.filter((j) => !known.has(j.id)));
    jobs.hasMore = page.has_more;
    jobs.nextCursor = page.next_cursor;
  } else if (jobs.list.length <= 100) {
    jobs.list = page.data;
    jobs.hasMore = page.has_more;
    jobs.nextCursor = page.next_cursor;
  } else {
    const fresh = new Map(page.data.map((j) => [j.id, j]));
    jobs.list = jobs.list.map((j) => fresh.get(j.id) ?? j);
  }
  renderJobs();
  schedulePoll();
}

/**
 * Schedules the next refresh of the jobs view, while it is shown: soon while
 * a job is pending or running, now and then otherwise. A hidden tab makes no
 * requests (the key's rate limit is shared with the user's own scripts).
 */
function schedulePoll(delay) {
  clearTimeout(jobs.timer);
  jobs.timer = null;
  if ($("jobs-view").hidden || !currentSession()) {
    $("jobs-live").textContent = "";
    return;
  }
  const live = jobs.list.some((j) => !TERMINAL.has(j.status));
  $("jobs-live").textContent = live ? `updating every ${POLL_MS / 1000} s` : "";
  jobs.timer = setTimeout(
    () => {
      if (document.hidden || jobs.loading > 0) {
        schedulePoll();
      } else {
        loadJobs("refresh");
      }
    },
    delay ?? (live ? POLL_MS : IDLE_POLL_MS),
  );
}

/** Notes how far a job had got at `now`, for its rate. */
function observe(job, now) {
  if (job.status !== "running") {
    jobs.samples.delete(job.id);
    return;
  }
  const samples = jobs.samples.get(job.id) ?? [];
  samples.push({ t: now, processed: job.processed_records });
  while (samples.length > 2 && now - samples[0].t > RATE_WINDOW_MS) {
    samples.shift();
  }
  jobs.samples.set(job.id, samples);
}

/**
 * Records per second: for a finished job its average from start to end; for
 * a running one the change between this console's recent polls, or, before
 * the second poll, its average since it started.
 */
function rateOf(job) {
  if (TERMINAL.has(job.status)) {
    if (!job.started_at || !job.completed_at) return null;
    // Timestamps are to the second: a job done within one counts as one.
    const seconds = Math.max(
      1,
      (Date.parse(job.completed_at) - Date.parse(job.started_at)) / 1000,
    );
    return { perSecond: job.processed_records / seconds, average: true };
  }
  if (job.status !== "running") return null;
  const samples = jobs.samples.get(job.id) ?? [];
  if (samples.length >= 2) {
    const first = samples[0];
    const last = samples[samples.length - 1];
    const seconds = (last.t - first.t) / 1000;
    if (seconds > 0) {
      return { perSecond: (last.processed - first.processed) / seconds, average: false };
    }
  }
  if (job.started_at) {
    const seconds = (Date.now() - Date.parse(job.started_at)) / 1000;
    if (seconds >= 1) {
      return { perSecond: job.processed_records / seconds, average: false };
    }
  }
  return null;
}

function formatRate(rate) {
  if (!rate) return "–";
  const n = rate.perSecond;
  const value =
    n < 10
      ? n.toLocaleString(undefined, { maximumFractionDigits: 1 })
      : Math.round(n).toLocaleString();
  return `${rate.average ? "avg " : ""}${value}/s`;
}

function percentOf(job) {
  if (job.total_records <= 0) return 0;
  // Floored, so 100% means every record was processed.
  return Math.floor((job.processed_records * 100) / job.total_records);
}

function cell(className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  return td;
}

function newJobRow(id) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = id;
  const created = cell("created");
  const resource = cell("resource");
  const source = cell("source");
  const status = cell("status");
  const badge = document.createElement("span");
  status.append(badge);
  const progressCell = cell("progress-cell");
  const progress = document.createElement("div");
  progress.className = "progress";
  const bar = document.createElement("progress");
  const pct = document.createElement("span");
  pct.className = "pct";
  const count = document.createElement("span");
  count.className = "count";
  progress.append(bar, pct, count);
  progressCell.append(progress);
  const succeeded = cell("num succeeded");
  const failed = cell("num failed");
  const rate = cell("num rate");
  const actions = cell("actions");
  const errorsLink = document.createElement("a");
  errorsLink.className = "errors-link";
  errorsLink.href = `#/jobs/${id}/errors`;
  const notKept = document.createElement("span");
  notKept.className = "not-kept";
  actions.append(errorsLink, notKept);
  tr.append(created, resource, source, status, progressCell, succeeded, failed, rate, actions);
  return {
    tr,
    created,
    resource,
    source,
    badge,
    bar,
    pct,
    count,
    succeeded,
    failed,
    rate,
    errorsLink,
    notKept,
  };
}

/** What a job's records carried that no field reads, as one sentence. */
function notKeptText(job) {
  const ignored = job.ignored_fields || [];
  if (ignored.length === 0) return "";
  const fields = ignored.map((f) => `${f.field} (${f.records.toLocaleString()} records)`);
  return `Not kept, no such field: ${fields.join(", ")}.`;
}

/** Updates the rows in place, so they do not flicker and stay clickable. */
function renderJobs() {
  const ordered = [];
  for (const job of jobs.list) {
    let row = jobs.rows.get(job.id);
    if (!row) {
      row = newJobRow(job.id);
      jobs.rows.set(job.id, row);
    }
    const created = new Date(job.created_at);
    row.created.textContent = created.toLocaleString();
    row.created.title = job.created_at;
    row.resource.textContent = job.resource;
    row.source.textContent = job.external_source;
    row.tr.dataset.status = job.status;
    row.badge.className = `badge status-${job.status}`;
    row.badge.textContent = job.status;
    const pct = percentOf(job);
    row.bar.max = job.total_records;
    row.bar.value = job.processed_records;
    row.bar.setAttribute("aria-label", `${pct}% processed`);
    row.pct.textContent = `${pct}%`;
    row.count.textContent = `${job.processed_records.toLocaleString()} / ${job.total_records.toLocaleString()}`;
    row.succeeded.textContent = job.succeeded_records.toLocaleString();
    row.failed.textContent = job.failed_records.toLocaleString();
    row.rate.textContent = formatRate(rateOf(job));
    row.errorsLink.hidden = job.failed_records === 0;
    row.errorsLink.textContent = `Errors (${job.failed_records.toLocaleString()})`;
    const notKept = notKeptText(job);
    row.notKept.hidden = notKept === "";
    row.notKept.textContent = notKept;
    ordered.push(row.tr);
  }
  const shown = new Set(jobs.list.map((j) => j.id));
  for (const id of jobs.rows.keys()) {
    if (!shown.has(id)) jobs.rows.delete(id);
  }
  $("jobs-body").replaceChildren(...ordered);
  $("jobs-empty").hidden = jobs.list.length > 0;
  $("jobs-table").hidden = jobs.list.length === 0;
  $("jobs-more").hidden = !jobs.hasMore;
}

// ------------------------------------------------------------------ errors

const errors = { jobId: null, nextCursor: null, generation: 0 };

async function openErrors(jobId) {
  errors.jobId = jobId;
  errors.nextCursor = null;
  errors.generation += 1;
  const generation = errors.generation;
  $("errors-job-id").textContent = jobId;
  $("errors-summary").textContent = "";
  $("errors-body").replaceChildren();
  $("errors-empty").hidden = true;
  $("errors-more").hidden = true;
  try {
    const job = await getJson(`/migration/jobs/${jobId}`);
    if (generation !== errors.generation) return;
    $("errors-summary").textContent =
      `${job.resource} from ${job.external_source}, ${job.status}: ` +
      `${job.failed_records.toLocaleString()} of ${job.total_records.toLocaleString()} records failed` +
      (TERMINAL.has(job.status) ? "." : " so far.") +
      (notKeptText(job) ? ` ${notKeptText(job)}` : "");
  } catch (e) {
    if (generation !== errors.generation) return;
    banner.show(e, "Loading the job");
    return;
  }
  await loadErrors(generation);
}

async function loadErrors(generation) {
  const params = new URLSearchParams({ limit: String(ERRORS_PAGE) });
  if (errors.nextCursor !== null) {
    params.set("starting_after", String(errors.nextCursor));
  }
  let page;
  // One page at a time, so a double click does not show a page twice.
  $("errors-more").disabled = true;
  try {
    page = await getJson(`/migration/jobs/${errors.jobId}/errors?${params}`);
  } catch (e) {
    if (generation === errors.generation) banner.show(e, "Loading the errors");
    return;
  } finally {
    $("errors-more").disabled = false;
  }
  if (generation !== errors.generation) return;
  const rows = page.data.map((error) => {
    const tr = document.createElement("tr");
    tr.dataset.index = String(error.index);
    const values = [
      ["num index", String(error.index)],
      ["external-id mono", error.external_id ?? ""],
      ["code mono", error.code],
      ["message", error.error],
      ["param mono", error.param ?? ""],
      ["hint", error.hint ?? ""],
    ];
    for (const [className, value] of values) {
      const td = cell(className);
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  });
  $("errors-body").append(...rows);
  errors.nextCursor = page.next_cursor;
  const none = $("errors-body").children.length === 0;
  $("errors-empty").hidden = !none;
  $("errors-table").hidden = none;
  $("errors-more").hidden = !page.has_more;
}

/** The file name a Content-Disposition header gives, without any path. */
function filenameOf(disposition) {
  if (!disposition) return null;
  const extended = disposition.match(/filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/);
  const plain = disposition.match(/filename\s*=\s*(?:"([^"]*)"|([^;\s]+))/);
  let name = null;
  if (extended) {
    try {
      name = decodeURIComponent(extended[1]);
    } catch {
      name = null;
    }
  }
  name = name ?? (plain ? (plain[1] ?? plain[2]) : null);
  if (!name) return null;
  name = name.replace(/[\\/]/g, "_").trim();
  return name || null;
}

/**
 * Downloads every error of the job as CSV. The download needs the bearer
 * header, which a plain link cannot send: the file is fetched, held as a
 * Blob and saved through a temporary `<a download>`.
 */
async function downloadErrors() {
  const button = $("errors-download");
  const jobId = errors.jobId;
  button.disabled = true;
  try {
    const response = await api(`/migration/jobs/${jobId}/errors?format=csv`);
    const blob = await response.blob();
    const name =
      filenameOf(response.headers.get("content-disposition")) ?? `job-${jobId}-errors.csv`;
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    // Revoked later, not at once: the browser reads the Blob after the click.
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    banner.show(e, "Downloading the errors");
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------- reconciliation

/**
 * Parses JSON keeping each number's own digits as a string where the browser
 * can (JSON.parse source text access), so money is shown exactly as the API
 * sent it; elsewhere it falls back to numbers.
 */
function parseExact(text) {
  return JSON.parse(text, (_key, value, context) =>
    typeof value === "number" && context && typeof context.source === "string"
      ? context.source
      : value,
  );
}

/** `1234567.5000` as `1,234,567.50`, from the decimal's own digits. */
function formatMoney(value) {
  const text = String(value);
  const match = text.match(/^(-?)(\d+)(?:\.(\d+))?$/);
  if (!match) return text;
  const [, sign, whole, fraction = ""] = match;
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const cents = fraction.replace(/0+$/, "").padEnd(2, "0");
  return `${sign}${grouped}.${cents}`;
}

function row(values) {
  const tr = document.createElement("tr");
  for (const [className, value] of values) {
    const td = cell(className);
    td.textContent = value;
    tr.append(td);
  }
  return tr;
}

function loadReconciliation() {
  loadCounts();
  loadTrialBalance();
}

async function loadCounts() {
  const box = $("counts-error");
  clearError(box);
  try {
    const counts = await getJson("/reconciliation/counts");
    const rows = counts.data.map((c) =>
      row([
        ["resource", c.resource],
        ["source", c.external_source ?? "(no source)"],
        ["num count", Number(c.count).toLocaleString()],
      ]),
    );
    $("counts-body").replaceChildren(...rows);
    const totals = Object.entries(counts.totals).map(([resource, total]) =>
      row([
        ["resource", `${resource}, all sources`],
        ["source", ""],
        ["num count", Number(total).toLocaleString()],
      ]),
    );
    $("counts-totals").replaceChildren(...totals);
    $("counts-table").hidden = false;
  } catch (e) {
    $("counts-table").hidden = true;
    showError(box, e, "Loading the record counts");
  }
}

async function loadTrialBalance(event) {
  if (event) event.preventDefault();
  const box = $("tb-error");
  clearError(box);
  $("tb-summary").replaceChildren();
  const params = new URLSearchParams();
  const asOf = $("tb-as-of").value;
  const source = $("tb-source").value.trim();
  if (asOf) params.set("as_of_date", asOf);
  if (source) params.set("external_source", source);
  try {
    const response = await api(`/reconciliation/trial-balance?${params}`);
    const balance = parseExact(await response.text());
    const rows = balance.accounts.map((a) =>
      row([
        ["account mono", a.account_number],
        ["name", a.name],
        ["type", a.account_type],
        ["normal", a.normal_balance],
        ["num debits", formatMoney(a.debits)],
        ["num credits", formatMoney(a.credits)],
        ["num balance", formatMoney(a.balance)],
      ]),
    );
    $("tb-body").replaceChildren(...rows);
    $("tb-totals").replaceChildren(
      row([
        ["", "Total"],
        ["", ""],
        ["", ""],
        ["", ""],
        ["num", formatMoney(balance.total_debits)],
        ["num", formatMoney(balance.total_credits)],
        ["", ""],
      ]),
    );
    const verdict = document.createElement("span");
    verdict.className = balance.in_balance ? "in-balance" : "out-of-balance";
    verdict.textContent = balance.in_balance ? "in balance" : "OUT OF BALANCE";
    const scope = balance.external_source ? ` for ${balance.external_source}` : "";
    $("tb-summary").append(
      `As of ${balance.as_of_date}${scope}: ${balance.accounts.length} accounts with postings, `,
      verdict,
      ".",
    );
    $("tb-table").hidden = false;
  } catch (e) {
    $("tb-table").hidden = true;
    showError(box, e, "Loading the trial balance");
  }
}

// ------------------------------------------------------------------- start

function start() {
  $("sign-in").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("filter-resource").addEventListener("change", () => loadJobs("reset"));
  $("filter-status").addEventListener("change", () => loadJobs("reset"));
  $("jobs-refresh").addEventListener("click", () => loadJobs("reset"));
  $("jobs-more").addEventListener("click", () => loadJobs("more"));
  $("errors-more").addEventListener("click", () => loadErrors(errors.generation));
  $("errors-download").addEventListener("click", downloadErrors);
  $("reconciliation-refresh").addEventListener("click", loadReconciliation);
  $("trial-balance-form").addEventListener("submit", loadTrialBalance);
  window.addEventListener("hashchange", route);
  route();
}

start();
