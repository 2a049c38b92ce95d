// fetch() for the REST API with the session cookie and Django's CSRF token.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `Request failed (HTTP ${status}).`);
    this.status = status;
    this.body = body;
  }

  /** The first message for a field of a validation error, else the detail. */
  fieldMessage(field) {
    const errors = this.body && this.body.errors;
    return (errors && errors[field] && errors[field][0]) || this.message;
  }
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** JSON in, JSON out; throws ApiError for an error answer (the project's error format). */
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Every row of a paged history answer, following ``next`` (bounded, so a bad link cannot loop). */
export async function allResults(path, { signal, maxPages = 20 } = {}) {
  const rows = [];
  let url = path;
  let meta = null;
  for (let page = 0; url && page < maxPages; page += 1) {
    const data = await api(url, { signal });
    meta = meta || data;
    rows.push(...data.results);
    url = data.next ? new URL(data.next, location.href).pathname + new URL(data.next, location.href).search : null;
  }
  return { meta, rows };
}
