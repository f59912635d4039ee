// What every Bot execution sees besides the ECMAScript built-ins: `medplum`, Medplum's client
// API answered in process by this server's store, and `console`, captured for the AuditEvent.
// Both are written over one host function taking JSON text and returning the reply as a value.
const host = globalThis.__host;
const log = globalThis.__log;
delete globalThis.__host;
delete globalThis.__log;

function call(method, args) {
  return new Promise((resolve, reject) => {
    const reply = host(method, JSON.stringify(args));
    if (reply.ok) {
      resolve(reply.value);
    } else {
      const error = new Error(reply.message);
      error.outcome = reply.outcome;
      reject(error);
    }
  });
}

// Medplum accepts a query as a string, an object (arrays repeat a parameter) or URLSearchParams.
function queryString(query) {
  if (query === undefined || query === null) return '';
  if (typeof query === 'string') return query.startsWith('?') ? query.slice(1) : query;
  const pairs = [];
  const entries = typeof query.entries === 'function' && !Array.isArray(query) ? Array.from(query.entries()) : Object.entries(query);
  for (const [name, value] of entries) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null) pairs.push(encodeURIComponent(name) + '=' + encodeURIComponent(String(item)));
    }
  }
  return pairs.join('&');
}

// Adds name=value unless the query names it already.
function withParameter(query, name, value) {
  if (query.split('&').some((pair) => pair.split('=')[0] === name)) return query;
  return query + (query ? '&' : '') + name + '=' + value;
}

function referenceParts(reference) {
  const text = typeof reference === 'string' ? reference : reference && reference.reference;
  const parts = String(text || '').split('/');
  return [parts[parts.length - 2], parts[parts.length - 1]];
}

globalThis.medplum = Object.freeze({
  readResource: (resourceType, id) => call('read', [resourceType, id]),
  readReference: (reference) => call('read', referenceParts(reference)),
  search: (resourceType, query) => call('search', [resourceType, queryString(query)]),
  // These two want only the resources: the server sends no Bundle and counts no total.
  searchResources: (resourceType, query) =>
    call('search-resources', [resourceType, withParameter(queryString(query), '_total', 'none')]),
  searchOne: (resourceType, query) =>
    call('search-resources', [resourceType, withParameter(withParameter(queryString(query), '_total', 'none'), '_count', '1')]).then(
      (resources) => resources[0]
    ),
  createResource: (resource) => call('create', [resource]),
  updateResource: (resource) => call('update', [resource]),
  upsertResource: (resource, query) => call('upsert', [resource, queryString(query)]),
  patchResource: (resourceType, id, operations) => call('patch', [resourceType, id, operations]),
  deleteResource: (resourceType, id) => call('delete', [resourceType, id]),
  executeBatch: (bundle) => call('batch', [bundle]),
  // This server's own URLs, answered in process: REST paths and $operations.
  fhirUrl: (...path) => ({ path: path.map(String).join('/'), toString() { return this.path; } }),
  get: (url) => call('http', ['GET', String(url), null]),
  post: (url, body) => call('http', ['POST', String(url), body === undefined ? null : body]),
  put: (url, body) => call('http', ['PUT', String(url), body === undefined ? null : body]),
  delete: (url) => call('http', ['DELETE', String(url), null]),
});

function format(value) {
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value);
  } catch (error) {
    return String(value);
  }
}

globalThis.console = Object.freeze({
  log: (...values) => log('log', values.map(format).join(' ')),
  info: (...values) => log('info', values.map(format).join(' ')),
  warn: (...values) => log('warn', values.map(format).join(' ')),
  error: (...values) => log('error', values.map(format).join(' ')),
  debug: (...values) => log('debug', values.map(format).join(' ')),
});

export {};
