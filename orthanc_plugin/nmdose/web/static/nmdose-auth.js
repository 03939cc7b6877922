// nmdose pages in Keycloak mode: OpenID Connect Authorization Code flow with PKCE (RFC 7636) for a public
// browser client, as keycloak-js does it. The page shell holds no data; it carries
// <meta name="nmdose-oidc" content='{"issuer": ..., "client_id": ...}'> and every API call goes through
// nmdoseFetch(), which adds "Authorization: Bearer <access token>". Tokens live in sessionStorage (this tab only),
// are refreshed with the refresh token before they expire, and a 401 starts a new login. Each new access token
// is also posted to /nmdose/session (an HttpOnly, SameSite=Strict cookie for links followed without a header).
// Without the meta element (dev mode) nmdoseFetch is plain fetch.
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="nmdose-oidc"]');
  if (!meta) {
    window.nmdoseFetch = (url, options) => fetch(url, options);
    window.nmdoseAuthReady = Promise.resolve(null);
    return;
  }
  const cfg = JSON.parse(meta.getAttribute("content"));
  const issuer = cfg.issuer.replace(/\/+$/, "");
  const endpoints = {
    auth: cfg.authorization_endpoint || issuer + "/protocol/openid-connect/auth",
    token: cfg.token_endpoint || issuer + "/protocol/openid-connect/token",
  };
  const KEY = "nmdose.oidc." + cfg.client_id;
  const store = window.sessionStorage;

  function b64url(bytes) {
    let s = "";
    bytes.forEach((b) => (s += String.fromCharCode(b)));
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function randomString() {
    const bytes = new Uint8Array(32);
    crypto.getRandomValues(bytes);
    return b64url(bytes);
  }
  async function challenge(verifier) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    return b64url(new Uint8Array(digest));
  }
  function redirectUri() {
    const url = new URL(window.location.href);
    url.searchParams.delete("code");
    url.searchParams.delete("state");
    url.searchParams.delete("session_state");
    url.searchParams.delete("iss");
    url.hash = "";
    return url.toString();
  }
  function saved() {
    try {
      return JSON.parse(store.getItem(KEY + ".tokens") || "null");
    } catch (e) {
      return null;
    }
  }
  function keep(answer) {
    const now = Date.now();
    const tokens = {
      access_token: answer.access_token,
      refresh_token: answer.refresh_token || null,
      expires_at: now + 1000 * (Number(answer.expires_in) || 60),
      refresh_expires_at: answer.refresh_expires_in ? now + 1000 * Number(answer.refresh_expires_in) : null,
    };
    store.setItem(KEY + ".tokens", JSON.stringify(tokens));
    return tokens;
  }
  // POST /nmdose/session puts the new access token into an HttpOnly cookie, so that a link the browser follows
  // without a header (an outlier's "open in Orthanc") is authenticated too; the cookie lives as long as the token.
  const sessionUrl = new URL("../session", document.currentScript.src).toString();
  async function openSession(tokens) {
    try {
      await fetch(sessionUrl, {
        method: "POST",
        headers: { Authorization: "Bearer " + tokens.access_token, "Content-Type": "application/json" },
        body: "{}",
        credentials: "same-origin",
      });
    } catch (e) {
      // the API calls carry the header anyway; only followed links would lack the cookie
    }
  }
  async function tokenRequest(form) {
    const resp = await fetch(endpoints.token, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form).toString(),
    });
    if (!resp.ok) {
      throw new Error("token endpoint answered " + resp.status);
    }
    const tokens = keep(await resp.json());
    await openSession(tokens);
    return tokens;
  }
  async function login() {
    const verifier = randomString();
    const state = randomString();
    store.setItem(KEY + ".verifier", verifier);
    store.setItem(KEY + ".state", state);
    const target = redirectUri();
    store.setItem(KEY + ".redirect", target);
    const url = new URL(endpoints.auth);
    url.searchParams.set("client_id", cfg.client_id);
    url.searchParams.set("redirect_uri", target);
    url.searchParams.set("response_type", "code");
    url.searchParams.set("scope", cfg.scope || "openid");
    url.searchParams.set("state", state);
    url.searchParams.set("code_challenge", await challenge(verifier));
    url.searchParams.set("code_challenge_method", "S256");
    window.location.assign(url.toString());
    return new Promise(() => {}); // the page is leaving
  }
  async function completeLogin(params) {
    const state = store.getItem(KEY + ".state");
    const verifier = store.getItem(KEY + ".verifier");
    const target = store.getItem(KEY + ".redirect") || redirectUri();
    store.removeItem(KEY + ".state");
    store.removeItem(KEY + ".verifier");
    if (!state || params.get("state") !== state || !verifier) {
      throw new Error("login answer does not match this tab's login request (state)");
    }
    const tokens = await tokenRequest({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: target,
      client_id: cfg.client_id,
      code_verifier: verifier,
    });
    window.history.replaceState(null, "", target);
    return tokens;
  }
  async function current() {
    let tokens = saved();
    if (tokens && tokens.expires_at - Date.now() > 20000) {
      return tokens;
    }
    if (tokens && tokens.refresh_token && (!tokens.refresh_expires_at || tokens.refresh_expires_at > Date.now())) {
      try {
        return await tokenRequest({
          grant_type: "refresh_token",
          refresh_token: tokens.refresh_token,
          client_id: cfg.client_id,
        });
      } catch (e) {
        store.removeItem(KEY + ".tokens");
      }
    }
    return login();
  }

  const params = new URLSearchParams(window.location.search);
  const start = params.get("code") ? completeLogin(params).catch((e) => {
    store.removeItem(KEY + ".tokens");
    document.title = "nmdose: login failed";
    throw e;
  }) : current();
  window.nmdoseAuthReady = start;

  window.nmdoseFetch = async function (url, options) {
    await window.nmdoseAuthReady;
    const tokens = await current();
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({}, opts.headers || {}, { Authorization: "Bearer " + tokens.access_token });
    const resp = await fetch(url, opts);
    if (resp.status === 401) {
      store.removeItem(KEY + ".tokens");
      await login();
    }
    return resp;
  };

  // Export links (CSV, XLSX) cannot carry a header: fetch them with the token and save the answer.
  document.addEventListener("click", async (event) => {
    const link = event.target.closest && event.target.closest("a[data-download], a[download]");
    if (!link || !link.href || link.href.startsWith("blob:")) {
      return;
    }
    event.preventDefault();
    const resp = await window.nmdoseFetch(link.href);
    if (!resp.ok) {
      return;
    }
    const disposition = resp.headers.get("Content-Disposition") || "";
    const match = /filename="?([^";]+)"?/.exec(disposition);
    const blob = await resp.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = match ? match[1] : link.getAttribute("download") || "nmdose-export";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => {
      URL.revokeObjectURL(a.href);
      a.remove();
    }, 1000);
  });
})();
