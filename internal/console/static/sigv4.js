// AWS Signature Version 4 for the console's requests, with the browser's
// own WebCrypto (crypto.subtle: available on http://127.0.0.1 and
// https). Used only when the user signed in with keys (a server started
// with --auth required); in dev mode requests go unsigned.
'use strict';

const sigv4 = (() => {
  const enc = new TextEncoder();
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
  const sha256 = async (data) => hex(await crypto.subtle.digest('SHA-256', typeof data === 'string' ? enc.encode(data) : data));
  const hmac = async (key, msg) => {
    const k = await crypto.subtle.importKey('raw', typeof key === 'string' ? enc.encode(key) : key,
      { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    return crypto.subtle.sign('HMAC', k, enc.encode(msg));
  };
  // RFC 3986 encoding, as SigV4 wants it (encodeURIComponent leaves !'()* alone).
  const uriEncode = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());

  // canonicalPath re-encodes each segment of an already escaped path (the
  // double encoding of every service but S3).
  const canonicalPath = (path) => path.split('/').map((seg) => uriEncode(decodeURIComponent(seg))).join('/') || '/';

  const canonicalQuery = (search) => {
    const params = [];
    new URLSearchParams(search).forEach((v, k) => params.push([uriEncode(k), uriEncode(v)]));
    params.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    return params.map(([k, v]) => k + '=' + v).join('&');
  };

  // amzDate formats d as 20060102T150405Z.
  const amzDate = (d) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

  // sign returns the headers to send with a request: headers plus
  // X-Amz-Date, X-Amz-Content-Sha256, X-Amz-Security-Token (when the
  // credentials have a session token) and Authorization. url is absolute;
  // body a string, a Uint8Array or undefined; creds
  // {accessKeyId, secretAccessKey, sessionToken, region}; now (for tests)
  // the signing time.
  async function sign(method, url, headers, body, creds, service = 'lambda', now = new Date()) {
    const u = new URL(url);
    const date = amzDate(now);
    const day = date.slice(0, 8);
    const bytes = body === undefined || body === null ? new Uint8Array(0) : typeof body === 'string' ? enc.encode(body) : body;
    const payloadHash = await sha256(bytes);
    const h = {};
    for (const [k, v] of Object.entries(headers || {})) h[k.toLowerCase()] = String(v).trim().replace(/\s+/g, ' ');
    h['host'] = u.host;
    // The browser sends Content-Length itself (scripts may not set it); it
    // is signed as the SDKs sign it.
    if (bytes.length > 0) h['content-length'] = String(bytes.length);
    h['x-amz-date'] = date;
    h['x-amz-content-sha256'] = payloadHash;
    if (creds.sessionToken) h['x-amz-security-token'] = creds.sessionToken;
    const names = Object.keys(h).sort();
    const canonical = [method.toUpperCase(), canonicalPath(u.pathname), canonicalQuery(u.search),
      names.map((n) => n + ':' + h[n] + '\n').join(''), names.join(';'), payloadHash].join('\n');
    const scope = [day, creds.region, service, 'aws4_request'].join('/');
    const toSign = ['AWS4-HMAC-SHA256', date, scope, await sha256(canonical)].join('\n');
    let key = await hmac('AWS4' + creds.secretAccessKey, day);
    key = await hmac(key, creds.region);
    key = await hmac(key, service);
    key = await hmac(key, 'aws4_request');
    const signature = hex(await hmac(key, toSign));
    const out = Object.assign({}, headers);
    out['X-Amz-Date'] = date;
    out['X-Amz-Content-Sha256'] = payloadHash;
    if (creds.sessionToken) out['X-Amz-Security-Token'] = creds.sessionToken;
    out['Authorization'] = 'AWS4-HMAC-SHA256 Credential=' + creds.accessKeyId + '/' + scope +
      ', SignedHeaders=' + names.join(';') + ', Signature=' + signature;
    return out;
  }

  return { sign, canonicalQuery, canonicalPath };
})();
